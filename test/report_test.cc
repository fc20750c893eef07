// report.html: a synthetic three-stage run (stage shards → merge → report), checked as
// text (every subset, thresholds, escaping, no NaN, determinism) and, where chromium is
// installed, rendered headless to a PNG that must show the plots.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <tuple>
#include <unistd.h>

#include "core/model/image_preprocess.h"
#include "core/pipeline/merge.h"
#include "core/pipeline/ranking.h"
#include "core/pipeline/report.h"
#include "core/rewrite/rewrite_stage.h"
#include "core/store/shard_store.h"
#include "test/test_support.h"
#include "core/store/output_layout.h"

namespace align2 {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr std::uint64_t kConversation = 40;  // scored records of subset "conversation"
constexpr std::uint64_t kRecords = kConversation + 4;

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

// HTML-escaped text (the report's escaping of & < > " ').
std::string escaped(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '&') out += "&amp;";
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '"') out += "&quot;";
    else if (c == '\'') out += "&#39;";
    else out += c;
  }
  return out;
}

bool ends_with(const std::string& s, const std::string& end) {
  return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
}

// A truncated reply of the fixture: markup, then 1000 characters.
std::string long_reply() {
  std::string reply = "Question: <b>Where</b> & 'why' ";
  while (reply.size() < 1000) reply += "and so on ";
  return reply;
}

ShardMeta meta(const std::string& stage, int rank, const json& summary) {
  ShardMeta m;
  m.align2_version = "0.1.0+report-test";
  m.config_fingerprint = "cfg0123";
  m.input_fingerprint = "pool4567";
  m.stage = stage;
  m.rank = rank;
  m.world_size = 2;
  m.input_records = kRecords;
  m.stage_summary_json = summary.dump();
  m.timings_json = json{{"busy_s", rank == 0 ? 1.5 : 0.5}, {"records", 22}}.dump();
  return m;
}

std::string record_text(const std::string& id, const std::string& question, const std::string& answer) {
  return json{{"id", id},
              {"image", "coco/" + id + ".jpg"},
              {"conversations",
               {{{"from", "human"}, {"value", "<image>\n" + question}},
                {{"from", "gpt"}, {"value", answer}},
                {{"from", "human"}, {"value", "Second question about " + id + "?"}},
                {{"from", "gpt"}, {"value", "Second answer about " + id + "."}}}}}
      .dump();
}

ShardRow base_row(std::uint64_t index, const std::string& subset) {
  ShardRow r;
  r.index = index;
  r.key = fmt::format("{:032x}", index * 2654435761u + 17);
  r.id = fmt::format("rec{:03d}", index);
  r.subset = subset;
  r.status = Status::valid;
  r.image = "coco/" + r.id + ".jpg";
  r.record = record_text(r.id, fmt::format("What is in picture {}?", index), fmt::format("Answer number {}.", index));
  return r;
}

// The run: subset "conversation" with 40 scored records (stage 1 keeps 20, stage 2 keeps
// 10, all 10 go through the rewrite stage, see rewrite_turns); "detail" with one scored
// record (nothing kept: null thresholds) and one invalid record; "complex" with only
// unusable records (nothing scored). Record 0 carries a <script> tag and scores highest, so
// it is a top example.
class Report : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = test::scratch_dir("report");
    std::vector<ShardRow> s1;
    for (std::uint64_t i = 0; i < kConversation; ++i) {
      ShardRow r = base_row(i, "conversation");
      r.question_score = i == 0 ? 2.5 : -2.0 + 0.1 * double((i * 37) % 40);
      r.truncated = 0;
      s1.push_back(r);
    }
    s1[0].record = record_text("rec000", "<script>alert('x')</script> & more?", "An answer with <b>tags</b>.");
    ShardRow detail = base_row(kConversation, "detail");
    detail.question_score = 0.7;
    detail.selected_questions = 0;
    detail.truncated = 0;
    ShardRow bad = base_row(kConversation + 1, "detail");
    bad.status = Status::invalid;
    bad.reason = Reason::not_json;
    bad.message = "pool.jsonl record 41: not JSON";
    bad.record = "{not json";
    ShardRow missing = base_row(kConversation + 2, "complex");
    missing.status = Status::missing_image;
    missing.reason = Reason::missing_image;
    ShardRow dup = base_row(kConversation + 3, "complex");
    dup.status = Status::duplicate;
    dup.reason = Reason::duplicate;

    // Stage 1: top 20 of "conversation" by question score.
    std::vector<double> q;
    for (std::uint64_t i = 0; i < kConversation; ++i) q.push_back(s1[i].question_score);
    std::sort(q.begin(), q.end(), std::greater<double>());
    f_threshold_ = q[19];
    for (std::uint64_t i = 0; i < kConversation; ++i) s1[i].selected_questions = s1[i].question_score >= f_threshold_;
    json summary1 = {{"input", kRecords}, {"scored", 41}, {"kept", 20}, {"fraction", 0.5}, {"one_per_image", true},
                     {"by_subset",
                      {{"conversation", {{"scored", 40}, {"eligible", 40}, {"kept", 20}, {"threshold", f_threshold_}}},
                       {"detail", {{"scored", 1}, {"eligible", 1}, {"kept", 0}, {"threshold", nullptr}}}}}};
    s1.push_back(detail);
    s1.push_back(bad);
    s1.push_back(missing);
    s1.push_back(dup);

    // Stage 2: the survivors, two turns each; top 10 by the mean.
    std::vector<ShardRow> s2;
    std::vector<double> g;
    for (std::uint64_t i = 0; i < kConversation; ++i) {
      if (s1[i].selected_questions != 1) continue;
      ShardRow r = base_row(i, "conversation");
      r.record.clear();
      r.answer_scores = {float(0.25 * double(i % 13)), float(-1.0 + 0.125 * double(i % 7))};
      if (i == 0) r.answer_scores = {3.0f, 2.0f};  // the best record of the run
      r.answer_score = (double(r.answer_scores[0]) + double(r.answer_scores[1])) / 2;
      r.truncated = i == 3 ? 1 : 0;
      g.push_back(r.answer_score);
      s2.push_back(r);
    }
    std::vector<double> sorted_g = g;
    std::sort(sorted_g.begin(), sorted_g.end(), std::greater<double>());
    g_threshold_ = sorted_g[9];
    std::uint64_t kept2 = 0;
    for (ShardRow& r : s2) {
      r.selected_answers = r.answer_score >= g_threshold_ && kept2 < 10;
      kept2 += r.selected_answers;
    }
    ASSERT_EQ(kept2, 10u);
    json summary2 = {
        {"input", 20}, {"scored", 20}, {"kept", 10}, {"fraction", 0.5}, {"one_per_image", true},
        {"by_subset", {{"conversation", {{"scored", 20}, {"eligible", 20}, {"kept", 10}, {"threshold", g_threshold_}}}}}};

    // Rewrite: every kept record, two turns each, in five patterns (see rewrite_turns).
    std::vector<ShardRow> s3;
    RewriteCounts counts;
    for (const ShardRow& r2 : s2) {
      if (r2.selected_answers != 1) continue;
      ShardRow r = base_row(r2.index, "conversation");
      r.record.clear();
      r.kept = 1;
      rewrite_turns(s3.size() % 5, &r);
      counts.add(r);
      s3.push_back(r);
    }
    json summary3 = counts.summary();

    std::vector<std::string> paths;
    auto write_stage = [&](const std::string& stage, const std::vector<ShardRow>& rows, const json& summary) {
      std::vector<ShardRow> part[2];
      for (const ShardRow& r : rows) part[r.index % 2].push_back(r);
      for (int rank = 0; rank < 2; ++rank) {
        paths.push_back(shard_path(out_, stage, rank));
        write_shard(paths.back(), meta(stage, rank, summary), part[rank]);
      }
    };
    write_stage("select_questions", s1, summary1);
    write_stage("select_answers", s2, summary2);
    write_stage("rewrite", s3, summary3);
    merge_shards(paths, out_);
  }

  // The rewrite columns of a record of pattern p:
  //   0: turn 1 uses its rewrite, turn 2 kept its original after review;
  //   1: turn 1 fell back (truncated, a long reply with markup), turn 2 uses its rewrite;
  //   2: both fell back (malformed with markup, length_ratio);
  //   3: the image could not be read (bad_image, no replies);
  //   4: both turns kept their originals after review.
  // Of 10 records: samples 4 kept the rewrite, 2 the original, 4 fell back; turns 4, 6, 10.
  static void rewrite_turns(std::size_t p, ShardRow* r) {
    const std::uint64_t i = r->index;
    const float nan = NAN;
    auto turn = [&](const std::string& q, const std::string& a, const std::string& reply, const std::string& reason,
                    std::int8_t kept, float p1, float p2) {
      r->rewritten_questions.push_back(q);
      r->rewritten_answers.push_back(a);
      r->rewrite_replies.push_back(reply);
      r->rewrite_reasons.push_back(reason);
      r->rewrite_kept.push_back(kept);
      r->review_p_order1.push_back(p1);
      r->review_p_order2.push_back(p2);
      r->review_p.push_back(std::isnan(p1) ? nan : (p1 + p2) / 2);
    };
    const std::string q1 = fmt::format("<image>\nRewritten question {}?", i);
    const std::string a1 = fmt::format("Rewritten answer {}.", i);
    const std::string q2 = fmt::format("Rewritten second question {}?", i);
    const std::string a2 = fmt::format("Rewritten second answer {}.", i);
    switch (p) {
      case 0:
        turn(q1, a1, "Question: " + q1 + "\nAnswer: " + a1, "", 1, 0.625f, 0.875f);
        turn(q2, a2, "Question: " + q2 + "\nAnswer: " + a2, "", 0, 0.25f, 0.375f);
        break;
      case 1:
        turn("", "", long_reply(), "truncated", 0, nan, nan);
        turn(q2, a2, "Question: " + q2 + "\nAnswer: " + a2, "", 1, 0.875f, 1.0f);
        break;
      case 2:
        turn("", "", "Sure! <i>Here</i> is my \"rewrite\" & more", "malformed", 0, nan, nan);
        turn("", "", "Question: Hm?\nAnswer: Hm.", "length_ratio", 0, nan, nan);
        break;
      case 3:
        turn("", "", "", "bad_image", 0, nan, nan);
        turn("", "", "", "bad_image", 0, nan, nan);
        r->message = "cannot read coco/" + r->id + ".jpg";
        break;
      default:
        turn(q1, a1, "Question: " + q1 + "\nAnswer: " + a1, "", 0, 0.125f, 0.25f);
        turn(q2, a2, "Question: " + q2 + "\nAnswer: " + a2, "", 0, 0.375f, 0.25f);
    }
  }

  std::string out_;
  double f_threshold_ = 0;
  double g_threshold_ = 0;
};

void expect_no_nan(const std::string& html) {
  std::regex bad("\\b(nan|inf|infinity)\\b", std::regex::icase);
  std::smatch m;
  EXPECT_FALSE(std::regex_search(html, m, bad)) << "found \"" << m.str() << "\"";
}

TEST_F(Report, ShowsCountsPlotsThresholdsAndEscapedExamples) {
  std::string path = write_report(out_);
  EXPECT_EQ(path, out_ + "/report.html");
  std::string html = test::read_file(path);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  // Balanced SVG: 3 subsets × 2 histograms + 3 stages' busy-time charts.
  EXPECT_EQ(count_of(html, "<svg "), count_of(html, "</svg>"));
  EXPECT_EQ(count_of(html, "<svg "), 9u);
  EXPECT_EQ(count_of(html, "<table>"), count_of(html, "</table>"));
  // No external resources, no scripts.
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  EXPECT_EQ(html.find("href="), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more?"), std::string::npos);
  EXPECT_NE(html.find("An answer with &lt;b&gt;tags&lt;/b&gt;."), std::string::npos);
  expect_no_nan(html);

  for (const char* subset : {"conversation", "detail", "complex"})
    EXPECT_NE(html.find(fmt::format("<h3>Subset {}</h3>", subset)), std::string::npos) << subset;
  EXPECT_NE(html.find(fmt::format("threshold {:.4f}", f_threshold_)), std::string::npos);
  EXPECT_NE(html.find(fmt::format("threshold {:.4f}", g_threshold_)), std::string::npos);
  EXPECT_NE(html.find("none (nothing kept)"), std::string::npos);  // detail: null threshold
  EXPECT_NE(html.find("no scored records"), std::string::npos);    // complex
  // Header facts.
  EXPECT_NE(html.find("0.1.0+report-test"), std::string::npos);
  EXPECT_NE(html.find("cfg0123"), std::string::npos);
  EXPECT_NE(html.find("pool4567"), std::string::npos);
  EXPECT_NE(html.find("<tr><th>input records</th><td class=\"n\">44</td></tr>"), std::string::npos);
  EXPECT_NE(html.find("<tr><th>kept</th><td class=\"n\">10</td></tr>"), std::string::npos);
  // Counts: per status, per reason, per subset (input, valid, stage-1 scored/kept, ..., kept).
  EXPECT_NE(html.find("<tr><td>valid</td><td class=\"n\">41</td><td class=\"n\">10</td><td class=\"n\">31</td>"
                      "<td class=\"n\">0</td></tr>"),
            std::string::npos);
  EXPECT_NE(html.find("<tr><td>not_json</td><td>invalid</td><td class=\"n\">1</td></tr>"), std::string::npos);
  EXPECT_NE(html.find("<tr><td>conversation</td><td class=\"n\">40</td><td class=\"n\">40</td><td class=\"n\">40</td>"
                      "<td class=\"n\">20</td>"),
            std::string::npos);
  // Busy time: 1.5 s and 0.5 s -> mean 1.0, imbalance 50 %.
  EXPECT_NE(html.find("imbalance (max/mean \u2212 1) 50.0 %"), std::string::npos);
  // Rewrite: samples and turns, fallback reasons, per subset (the examples: RewriteExamples).
  EXPECT_NE(html.find("<h2>Rewrite</h2>"), std::string::npos);
  EXPECT_NE(html.find("<tr><th>attempted</th><td class=\"n\">10</td><td class=\"n\">100.0 %</td>"
                      "<td class=\"n\">20</td><td class=\"n\">100.0 %</td></tr>"),
            std::string::npos);
  EXPECT_NE(html.find("<tr><th>kept the rewrite</th><td class=\"n\">4</td><td class=\"n\">40.0 %</td>"
                      "<td class=\"n\">4</td><td class=\"n\">20.0 %</td></tr>"),
            std::string::npos);
  EXPECT_NE(html.find("<tr><th>kept the original (after review)</th><td class=\"n\">2</td>"
                      "<td class=\"n\">20.0 %</td><td class=\"n\">6</td><td class=\"n\">30.0 %</td></tr>"),
            std::string::npos);
  EXPECT_NE(html.find("<tr><th>fell back</th><td class=\"n\">4</td><td class=\"n\">40.0 %</td>"
                      "<td class=\"n\">10</td><td class=\"n\">50.0 %</td></tr>"),
            std::string::npos);
  // Reasons, most frequent first (bad_image: 4 of 10 fallbacks, of 20 turns), then by name.
  std::size_t bad_image = html.find("<tr><td><code>bad_image</code></td><td>the sample&#39;s image could not be read");
  ASSERT_NE(bad_image, std::string::npos);
  EXPECT_TRUE(ends_with(html.substr(bad_image, html.find("</tr>", bad_image) + 5 - bad_image),
                        "<td class=\"n\">4</td><td class=\"n\">40.0 %</td><td class=\"n\">20.0 %</td></tr>"));
  std::size_t length_ratio = html.find("<tr><td><code>length_ratio</code></td>");
  std::size_t malformed = html.find("<tr><td><code>malformed</code></td>");
  std::size_t truncated = html.find("<tr><td><code>truncated</code></td>");
  EXPECT_LT(bad_image, length_ratio);
  EXPECT_LT(length_ratio, malformed);
  EXPECT_LT(malformed, truncated);
  EXPECT_NE(truncated, std::string::npos);
  EXPECT_NE(html.find("<h3>Rewrites kept per subset</h3>"), std::string::npos);
  EXPECT_NE(html.find("<tr><td>conversation</td><td class=\"n\">10</td><td class=\"n\">4</td>"
                      "<td class=\"n\">40.0 %</td></tr>"),
            std::string::npos);
  // Top example of "conversation": record 0; long-text fields shown without the <image> tag.
  EXPECT_NE(html.find("<td>top 1</td><td><code>rec000</code></td>"), std::string::npos);
  EXPECT_EQ(html.find("&lt;image&gt;"), std::string::npos);
}

// Before/after: the first 3 samples in curated order that use a rewrite, each at its first
// kept turn (turn 2 where turn 1 fell back), original beside rewrite; fallbacks: one turn per
// reason, the earliest reasons first, with the start of the reply, escaped.
TEST_F(Report, RewriteExamples) {
  std::string html = test::read_file(write_report(out_));
  ShardData data = read_shard(out_ + "/scores.h5");
  using Key = std::tuple<std::int64_t, std::uint64_t, std::size_t>;  // (global rank, row, turn)
  std::vector<Key> kept, fallbacks;
  for (std::uint64_t row = 0; row < data.rows.size(); ++row) {
    const ShardRow& r = data.rows[row];
    for (std::size_t t = 0; t < r.rewrite_kept.size(); ++t)
      if (r.rewrite_kept[t] == 1) {
        kept.push_back({r.global_rank, row, t});
        break;
      }
    for (std::size_t t = 0; t < r.rewrite_reasons.size(); ++t)
      if (!r.rewrite_reasons[t].empty()) fallbacks.push_back({r.global_rank, row, t});
  }
  std::sort(kept.begin(), kept.end());
  ASSERT_EQ(kept.size(), 4u);
  bool second_turn_shown = false;
  for (std::size_t k = 0; k < kept.size(); ++k) {
    const auto [rank, row, t] = kept[k];
    const ShardRow& r = data.rows[row];
    ASSERT_GE(rank, 0);
    std::string original = json::parse(r.record)["conversations"][2 * t]["value"].get<std::string>();
    if (original.rfind("<image>\n", 0) == 0) original.erase(0, 8);
    original = escaped(original);  // rec000: a <script> tag
    const std::string rewrite = t == 0 ? fmt::format("Rewritten question {}?", r.index)
                                       : fmt::format("Rewritten second question {}?", r.index);
    const std::string p = fmt::format("{:.3f}<br>order 1: {:.3f}<br>order 2: {:.3f}", r.review_p[t],
                                      r.review_p_order1[t], r.review_p_order2[t]);
    const std::string shown = fmt::format(
        "<tr><td rowspan=\"2\"><code>{}</code></td><td rowspan=\"2\" class=\"n\">{} of 2</td><th>question</th>"
        "<td class=\"t\">{}</td><td class=\"t\">{}</td><td rowspan=\"2\" class=\"n\">{}</td></tr>",
        r.id, t + 1, original, rewrite, p);
    EXPECT_EQ(html.find(shown) != std::string::npos, k < 3) << k << ": " << shown;
    if (k < 3 && t == 1) {
      second_turn_shown = true;
      EXPECT_NE(html.find(shown + fmt::format("\n<tr><th>answer</th><td class=\"t\">Second answer about {}.</td>"
                                              "<td class=\"t\">Rewritten second answer {}.</td></tr>",
                                              r.id, r.index)),
                std::string::npos);
    }
  }
  ASSERT_TRUE(second_turn_shown) << "the fixture shows no example whose first turn fell back";

  // Fallbacks: 4 reasons; the 3 whose first turn comes first in curated order, in that order.
  std::sort(fallbacks.begin(), fallbacks.end());
  std::vector<Key> first_of_reason;
  std::set<std::string> reasons;
  for (const Key& f : fallbacks)
    if (reasons.insert(data.rows[std::get<1>(f)].rewrite_reasons[std::get<2>(f)]).second) first_of_reason.push_back(f);
  ASSERT_EQ(first_of_reason.size(), 4u);
  std::size_t at = html.find("<h3>Fallbacks</h3>");
  ASSERT_NE(at, std::string::npos);
  for (std::size_t k = 0; k < 4; ++k) {
    const auto [rank, row, t] = first_of_reason[k];
    const ShardRow& r = data.rows[row];
    const std::string& reason = r.rewrite_reasons[t];
    std::string reply = reason == "bad_image"   ? "<i>no reply</i></td>"
                        : reason == "truncated" ? "Question: &lt;b&gt;Where&lt;/b&gt; &amp; &#39;why&#39; and so on "
                        : reason == "malformed" ? "Sure! &lt;i&gt;Here&lt;/i&gt; is my &quot;rewrite&quot; &amp; more"
                                                : "Question: Hm?\nAnswer: Hm.";
    if (reason != "truncated" && reason != "bad_image") reply += "</td>";
    std::string row_html = fmt::format("<tr><td><code>{}</code></td><td class=\"n\">{} of 2</td><td><code>{}</code>"
                                       "</td><td class=\"t\">{}",
                                       r.id, t + 1, reason, reply);
    std::size_t found = html.find(row_html, at);
    EXPECT_EQ(found != std::string::npos, k < 3) << k << ": " << row_html;
    if (found != std::string::npos) at = found;
  }
  // A long reply is cut to 300 characters (the markup, 31, escaped).
  if (html.find("<td><code>truncated</code></td>", html.find("<h3>Fallbacks</h3>")) != std::string::npos) {
    EXPECT_NE(html.find("<td class=\"t\">" + escaped(long_reply().substr(0, 300)) + "\u2026</td>"), std::string::npos);
  }
  // No markup of a reply or a record gets through.
  EXPECT_EQ(html.find("<b>Where"), std::string::npos);
  EXPECT_EQ(html.find("<i>Here"), std::string::npos);
  EXPECT_EQ(html.find("&lt;image&gt;"), std::string::npos);
  EXPECT_EQ(html.find("<b>tags"), std::string::npos);
}

TEST_F(Report, IsDeterministicAndAtomic) {
  std::string path = write_report(out_);
  std::string first = test::read_file(path);
  write_report(out_);
  EXPECT_EQ(test::read_file(path), first);
  for (const auto& entry : fs::directory_iterator(out_))
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
  // The string form with every record loaded equals the file (the file loads only examples' texts).
  ShardData data = read_shard(out_ + "/scores.h5");
  json summary = json::parse(test::read_file(out_ + "/summary.json"));
  EXPECT_EQ(render_report(summary, data.meta, data.rows), first);
}

TEST_F(Report, ExampleRowsAreFewAndSorted) {
  ShardData data = read_shard(out_ + "/scores.h5", ShardReadOptions{false});
  std::vector<std::uint64_t> rows = report_example_rows(data.rows);
  // conversation: 3 top + 3 bottom; detail: 1 (its only scored record); rewritten rows overlap the tops.
  EXPECT_GE(rows.size(), 7u);
  EXPECT_LE(rows.size(), 10u);
  EXPECT_TRUE(std::is_sorted(rows.begin(), rows.end()));
  EXPECT_EQ(std::set<std::uint64_t>(rows.begin(), rows.end()).size(), rows.size());
}

TEST(ReportEdges, EmptyAndDegenerateInputsGiveNoNan) {
  // Nothing at all.
  std::string empty = render_report(json::object(), ShardMeta{}, {});
  expect_no_nan(empty);
  EXPECT_NE(empty.find("No timings recorded."), std::string::npos);
  EXPECT_EQ(count_of(empty, "<svg "), count_of(empty, "</svg>"));
  // One scored record, all scores equal, NaN and infinite scores, a threshold that is null.
  std::vector<ShardRow> rows(4);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    rows[i].index = i;
    rows[i].key = std::string(31, 'a') + char('a' + i);
    rows[i].subset = "s";
    rows[i].status = Status::valid;
    rows[i].selected_questions = 0;
    rows[i].question_score = 1.25;
  }
  rows[2].question_score = NAN;
  rows[3].question_score = INFINITY;
  rows[3].selected_answers = 0;  // a stage-2 row without a finite score
  json summary = {{"input_records", 4}, {"kept", 0},
                  {"stages", {{"select_questions", {{"by_subset", {{"s", {{"threshold", nullptr}}}}}}}}},
                  {"timings", {{"select_questions", {{"ranks", 2}, {"per_rank", {json::object(), {{"busy_s", 0}}}}}}}}};
  std::string html = render_report(summary, ShardMeta{}, rows);
  expect_no_nan(html);
  EXPECT_NE(html.find("none (nothing kept)"), std::string::npos);
  EXPECT_NE(html.find("2 without a finite score"), std::string::npos);
  EXPECT_NE(html.find("imbalance (max/mean \u2212 1) n/a"), std::string::npos);
  EXPECT_EQ(count_of(html, "<svg "), count_of(html, "</svg>"));
}

// The Rewrite section is there when summary.json has stages.rewrite (whatever the rows hold);
// counts it lacks are dashes; one-turn instruction/output records show their turn.
TEST(ReportEdges, RewriteSectionFollowsTheSummary) {
  std::vector<ShardRow> rows(2);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    rows[i].index = i;
    rows[i].key = std::string(31, 'a') + char('a' + i);
    rows[i].id = fmt::format("r{}", i);
    rows[i].subset = "s";
    rows[i].status = Status::valid;
    rows[i].kept = 1;
    rows[i].global_rank = std::int64_t(1 - i);
  }
  rows[0].record =
      json{{"id", "r0"}, {"image", "a.jpg"}, {"instruction", "<image> Describe <it>."}, {"output", "A cat & a dog."}}.dump();
  rows[0].rewritten_questions = {"<image>\nDescribe it, please."};
  rows[0].rewritten_answers = {"A cat and a dog."};
  rows[0].rewrite_replies = {"Question: Describe it, please.\nAnswer: A cat and a dog."};
  rows[0].rewrite_reasons = {""};
  rows[0].rewrite_kept = {1};
  rows[0].review_p = {0.6f};
  rows[0].review_p_order1 = {0.55f};
  rows[0].review_p_order2 = {0.65f};
  rows[1].record = record_text("r1", "Q?", "A.");
  rows[1].rewritten_questions = rows[1].rewritten_answers = rows[1].rewrite_replies = {"", ""};
  rows[1].rewrite_reasons = {"", "too_long"};
  rows[1].rewrite_kept = {0, 0};
  rows[1].review_p = rows[1].review_p_order1 = rows[1].review_p_order2 = {0.25f, NAN};

  std::string without = render_report(json{{"input_records", 2}}, ShardMeta{}, rows);
  EXPECT_EQ(without.find("<h2>Rewrite</h2>"), std::string::npos);

  json summary = {{"input_records", 2},
                  {"stages", {{"rewrite", {{"attempted", 2}, {"turns", {{"by_reason", json::object()}}}}}}}};
  std::string html = render_report(summary, ShardMeta{}, rows);
  expect_no_nan(html);
  EXPECT_NE(html.find("<h2>Rewrite</h2>"), std::string::npos);
  EXPECT_NE(html.find("<tr><th>attempted</th><td class=\"n\">2</td><td class=\"n\">100.0 %</td>"
                      "<td class=\"n\">\u2014</td><td class=\"n\">\u2014</td></tr>"),
            std::string::npos);
  EXPECT_NE(html.find("<tr><th>kept the rewrite</th><td class=\"n\">\u2014</td><td class=\"n\">\u2014</td>"),
            std::string::npos);
  EXPECT_NE(html.find("No turn fell back."), std::string::npos);
  EXPECT_EQ(html.find("Rewrites kept per subset"), std::string::npos);
  EXPECT_NE(html.find("<td class=\"t\">Describe &lt;it&gt;.</td><td class=\"t\">Describe it, please.</td>"
                      "<td rowspan=\"2\" class=\"n\">0.600<br>order 1: 0.550<br>order 2: 0.650</td></tr>\n"
                      "<tr><th>answer</th><td class=\"t\">A cat &amp; a dog.</td>"
                      "<td class=\"t\">A cat and a dog.</td>"),
            std::string::npos);
  EXPECT_NE(html.find("<tr><td><code>r1</code></td><td class=\"n\">2 of 2</td><td><code>too_long</code></td>"
                      "<td class=\"t\"><i>no reply</i></td></tr>"),
            std::string::npos);
  // The fallback row's record text is not needed: only the before/after row and the subset examples'.
  EXPECT_EQ(report_example_rows(rows), std::vector<std::uint64_t>{0});
}

TEST(ReportErrors, NameTheFile) {
  std::string dir = test::scratch_dir("report_errors");
  auto message = [&] {
    try {
      write_report(dir);
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  EXPECT_NE(message().find(dir + "/summary.json: cannot read"), std::string::npos) << message();
  test::write_file(dir + "/summary.json", "{\"input_records\": ");
  EXPECT_NE(message().find(dir + "/summary.json: not JSON"), std::string::npos) << message();
  test::write_file(dir + "/summary.json", "[1, 2]");
  EXPECT_NE(message().find(dir + "/summary.json: not an align2 run summary"), std::string::npos) << message();
  test::write_file(dir + "/summary.json", "{\"input_records\": 3}");
  EXPECT_NE(message().find(dir + "/scores.h5"), std::string::npos) << message();
  ShardMeta m;
  m.stage = "merged";
  m.input_records = 3;
  write_shard(dir + "/scores.h5", m, {});
  EXPECT_NE(message().find(dir + "/scores.h5: holds 0 rows, but"), std::string::npos) << message();
  EXPECT_FALSE(fs::exists(dir + "/report.html"));
}

// write_report reads scores.h5 in blocks of rows: a file of several blocks, with examples and
// score extremes in different blocks and equal scores across them, gives the same report as
// render_report over all rows at once, and its top examples are the best rows of the file.
TEST(ReportStreaming, BlocksGiveTheSameReportAsAllRows) {
  std::string dir = test::scratch_dir("report_streaming");
  constexpr std::uint64_t kRows = 10000;  // about 2.5 blocks
  std::vector<ShardRow> rows;
  std::int64_t rank = 0;
  for (std::uint64_t i = 0; i < kRows; ++i) {
    ShardRow r = base_row(i, i % 3 == 0 ? "detail" : "conversation");
    r.question_score = double((i * 7919) % 1000) / 100.0;  // 0 .. 9.99, every value ten times
    r.selected_questions = r.question_score >= 5.0;
    if (r.selected_questions == 1) {
      r.answer_score = double((i * 104729) % 997) / 10.0 - 40.0;
      r.answer_scores = {float(r.answer_score)};
      r.selected_answers = r.answer_score >= 0;
    }
    r.kept = r.selected_answers == 1 ? 1 : 0;
    if (r.kept == 1) r.global_rank = rank++;
    r.truncated = 0;
    if (i % 1500 == 1499) {  // a few rewritten rows, kept or not, in several blocks
      r.rewritten_questions = {fmt::format("Rewritten question {}?", i)};
      r.rewritten_answers = {fmt::format("Rewritten answer {}.", i)};
      r.rewrite_replies = {"reply"};
      r.rewrite_reasons = {""};
      r.rewrite_kept = {1};
      r.review_p = {0.75f};
      r.review_p_order1 = {0.75f};
      r.review_p_order2 = {0.75f};
    }
    rows.push_back(r);
  }
  ShardMeta m;
  m.stage = "merged";
  m.align2_version = "0.1.0+report-test";
  m.input_records = kRows;
  write_shard(dir + "/scores.h5", m, rows);
  json summary = {{"input_records", kRows}, {"kept", rank}, {"stages", {{"rewrite", {{"attempted", kRows / 1500}}}}}};
  test::write_file(dir + "/summary.json", summary.dump());

  std::string html = test::read_file(write_report(dir));
  EXPECT_EQ(html, render_report(json::parse(test::read_file(dir + "/summary.json")),
                                read_shard_meta(dir + "/scores.h5"), rows));
  // The best "conversation" row by mean answer score (ties broken by key), wherever it lies.
  const ShardRow* best = nullptr;
  for (const ShardRow& r : rows)
    if (r.subset == "conversation" && r.selected_answers != -1 &&
        (!best || ranks_before(r.answer_score, r.key, best->answer_score, best->key)))
      best = &r;
  ASSERT_NE(best, nullptr);
  EXPECT_NE(html.find(fmt::format("<td>top 1</td><td><code>{}</code></td>", best->id)), std::string::npos);
  EXPECT_NE(html.find(fmt::format("What is in picture {}?", best->index)), std::string::npos);
  // The rewrite examples: kept rows by global rank first, then the others by row.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> rewritten;  // (rank or max, index)
  for (const ShardRow& r : rows)
    if (!r.rewritten_questions.empty())
      rewritten.push_back({r.global_rank < 0 ? UINT64_MAX : std::uint64_t(r.global_rank), r.index});
  std::sort(rewritten.begin(), rewritten.end());
  ASSERT_GE(rewritten.size(), 4u);
  for (std::size_t k = 0; k < rewritten.size(); ++k)
    EXPECT_EQ(html.find(fmt::format("Rewritten question {}?", rewritten[k].second)) != std::string::npos, k < 3) << k;
  EXPECT_EQ(html.find("record text not loaded"), std::string::npos);
}

// ---- headless Chromium

std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (std::size_t b = 0; b <= dirs.size();) {
    std::size_t e = dirs.find(':', b);
    if (e == std::string::npos) e = dirs.size();
    std::string candidate = dirs.substr(b, e - b) + "/" + name;
    if (e > b && access(candidate.c_str(), X_OK) == 0) return candidate;
    b = e + 1;
  }
  return "";
}

TEST_F(Report, RendersInHeadlessChromium) {
  std::string chromium = find_on_path("chromium");
  if (chromium.empty()) GTEST_SKIP() << "chromium is not on PATH (scripts/install-deps.sh installs it)";
  std::string report = fs::absolute(write_report(out_)).string();
  std::string shot = out_ + "/shot.png";
  // --no-sandbox: tests run as root; --disable-dev-shm-usage: containers with a small /dev/shm;
  // a private profile so parallel runs do not share one.
  std::string command = fmt::format(
      "timeout 60 '{}' --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars --no-first-run "
      "--user-data-dir='{}/chromium-profile' --window-size=1200,3000 --screenshot='{}' 'file://{}' 2>&1",
      chromium, out_, shot, report);
  auto start = std::chrono::steady_clock::now();
  test::CommandResult run = test::run_command(command);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "chromium screenshot took " << fmt::format("{:.1f}", seconds) << " s\n";
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  ASSERT_TRUE(fs::exists(shot)) << run.out << run.err;

  std::string png = test::read_file(shot);
  RgbImage image = decode_rgb8(reinterpret_cast<const std::uint8_t*>(png.data()), png.size(), shot);
  ASSERT_EQ(image.width, 1200);
  ASSERT_EQ(image.height, 3000);
  std::size_t pixels = std::size_t(image.width) * std::size_t(image.height);
  std::size_t not_white = 0, kept_blue = 0;
  std::set<std::uint32_t> colours;
  for (std::size_t i = 0; i < pixels; ++i) {
    const std::uint8_t* p = &image.pixels[3 * i];
    std::uint32_t c = std::uint32_t(p[0]) << 16 | std::uint32_t(p[1]) << 8 | p[2];
    colours.insert(c);
    not_white += c != 0xffffff;
    kept_blue += c == 0x4477aa;  // the "kept" bars
  }
  EXPECT_GT(double(not_white) / double(pixels), 0.02) << not_white << " of " << pixels << " pixels are not white";
  EXPECT_GT(colours.size(), 3u);
  EXPECT_GT(kept_blue, 500u) << "no histogram bars visible";
}

}  // namespace
}  // namespace align2
