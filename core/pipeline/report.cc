// report.html of a curation run; see the header and docs/report.md.
#include "core/pipeline/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <tuple>

#include "core/data/record_text.h"
#include "core/data/record_validation.h"
#include "core/pipeline/ranking.h"
#include "core/util/atomic_file.h"
#include "core/store/output_layout.h"

namespace align2 {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr int kBins = 30;                  // histogram bins over the data's range
constexpr std::size_t kExamplesPerEnd = 3;  // top and bottom examples per subset
constexpr std::size_t kRewriteExamples = 3; // before/after examples of the rewrite stage
constexpr std::size_t kFallbackExamples = 3; // fallback examples of the rewrite stage
constexpr std::size_t kTextLimit = 400;     // code points shown of a question or answer
constexpr std::size_t kFieldLimit = 120;    // code points shown of an id, image path, message
constexpr std::size_t kReplyLimit = 300;    // code points shown of a rewrite reply that fell back
constexpr double kHugeScore = 1e15;         // |score| at or above this is treated like NaN

// Colours (Paul Tol's bright scheme, readable in print).
constexpr const char* kKeptColour = "#4477aa";
constexpr const char* kDroppedColour = "#bbbbbb";
constexpr const char* kThresholdColour = "#cc3311";
constexpr const char* kBusyColour = "#228833";

// ---- text

std::string esc(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        // C0 controls other than tab and newline are not allowed in HTML text.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') out += ' ';
        else out += c;
    }
  }
  return out;
}

// The first `limit` code points of UTF-8 text, with "…" when cut.
std::string truncate_text(const std::string& s, std::size_t limit) {
  std::size_t points = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;  // continuation byte
    if (points == limit) return s.substr(0, i) + "\u2026";
    ++points;
  }
  return s;
}

std::string esc_cut(const std::string& s, std::size_t limit) { return esc(truncate_text(s, limit)); }

std::string subset_label(const std::string& subset) { return subset.empty() ? "(no subset)" : subset; }

// Fixed-precision number; never "nan"/"inf" (those become "n/a"), never "-0.00".
std::string fixed(double v, int precision) {
  if (!std::isfinite(v)) return "n/a";
  std::string s = fmt::format("{:.{}f}", v, precision);
  if (s[0] == '-' && s.find_first_not_of("-0.") == std::string::npos) s.erase(0, 1);
  return s;
}

// An SVG coordinate (pixels, 2 decimals). Inputs are finite by construction; 0 guards.
std::string px(double v) { return fixed(std::isfinite(v) ? v : 0.0, 2); }

std::string percent(std::uint64_t part, std::uint64_t whole) {
  return whole ? fixed(100.0 * double(part) / double(whole), 1) + " %" : "n/a";
}

bool usable(double v) { return std::isfinite(v) && std::fabs(v) < kHugeScore; }

// ---- summary.json access that never throws

const json& member(const json& j, const std::string& key) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

// A JSON scalar as text: integers as they are, other numbers in shortest round-trip form.
std::string scalar_text(const json& v) {
  if (v.is_null()) return "\u2014";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_number_unsigned()) return std::to_string(v.get<std::uint64_t>());
  if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
  if (v.is_number_float()) {
    double d = v.get<double>();
    return std::isfinite(d) ? fmt::format("{}", d) : "n/a";
  }
  return v.dump();
}

std::string cell(const json& v) { return esc_cut(scalar_text(v), kFieldLimit); }

double number_or(const json& v, double fallback) {
  if (!v.is_number()) return fallback;
  double d = v.get<double>();
  return std::isfinite(d) ? d : fallback;
}

// ---- records

struct ShownTurn {
  bool parsed = false;   // the record is valid and has the turn
  std::string question;  // without its <image> tag, stripped
  std::string answer;
};

// Turn `t` (0-based (question, answer) pair) of a record's JSON text, as validation reads it
// (core/data/record_validation.h: either record form).
ShownTurn turn_of(const std::string& record, std::size_t t) {
  ShownTurn out;
  const ValidatedRecord v = validate_record(record, RecordOrigin{}, ValidationOptions{}, record.size());
  if (v.sample.status != Status::valid || t >= v.sample.turns.size()) return out;
  out.parsed = true;
  out.question = text_without_image(v.sample.turns[t].question);
  out.answer = v.sample.turns[t].answer;
  return out;
}

// ---- example selection (streamed; shared by report_example_rows, render_report and write_report)

struct SubsetExamples {
  bool by_answer = false;            // ranked by stage-2 mean answer score (else question score)
  std::vector<std::uint64_t> top;    // best first
  std::vector<std::uint64_t> bottom; // worst first, none of `top`
};

// One turn of one row, shown as a rewrite example.
struct TurnExample {
  std::uint64_t row = 0;
  std::size_t turn = 0;
};

struct Examples {
  std::map<std::string, SubsetExamples> by_subset;
  std::vector<TurnExample> kept_rewrites;  // rows using a rewrite, their first such turn; curated order
  std::vector<TurnExample> fallbacks;      // turns that fell back, distinct reasons first; curated order
};

// Where a rewrite turn comes in the report's order: (global rank, or UINT64_MAX when not
// kept, so curated.json order first; row; turn).
using TurnKey = std::tuple<std::uint64_t, std::uint64_t, std::size_t>;

// Keeps the k smallest keys of a stream, sorted.
void keep_first(std::vector<TurnKey>& first, std::size_t k, const TurnKey& key) {
  auto pos = std::lower_bound(first.begin(), first.end(), key);
  if (std::size_t(pos - first.begin()) >= k) return;
  first.insert(pos, key);
  if (first.size() > k) first.pop_back();
}

// A row that may be shown as an example: its ranking score and key, and its position.
struct Candidate {
  double score = 0;
  std::string key;
  std::uint64_t row = 0;
};

// Keeps the k best candidates of a stream in order (best first; with `worst_first`, the k
// worst, worst first), ranked by ranks_before. A row ranking equal to a kept one goes after
// it. The key is copied only when the row is kept.
void keep_ranked(std::vector<Candidate>& best, std::size_t k, bool worst_first, double score, const std::string& key,
                 std::uint64_t row) {
  auto pos = std::find_if(best.begin(), best.end(), [&](const Candidate& c) {  // first that the row ranks before
    return worst_first ? ranks_before(c.score, c.key, score, key) : ranks_before(score, key, c.score, c.key);
  });
  if (std::size_t(pos - best.begin()) >= k) return;
  best.insert(pos, Candidate{score, key, row});
  if (best.size() > k) best.pop_back();
}

// Bounded state of the example choice, fed one row at a time in row order.
class ExampleChooser {
 public:
  void add(const ShardRow& r, std::uint64_t row) {
    if (!r.rewrite_kept.empty() || !r.rewrite_reasons.empty()) {
      // Kept rows by their position in curated.json first, then the rest by row.
      const std::uint64_t rank = r.global_rank < 0 ? UINT64_MAX : std::uint64_t(r.global_rank);
      for (std::size_t t = 0; t < r.rewrite_kept.size(); ++t)
        if (r.rewrite_kept[t] == 1) {  // the row's first turn that uses its rewrite
          keep_first(kept_rewrites_, kRewriteExamples, {rank, row, t});
          break;
        }
      for (std::size_t t = 0; t < r.rewrite_reasons.size(); ++t) {
        const std::string& reason = r.rewrite_reasons[t];
        if (reason.empty() || (t < r.rewrite_kept.size() && r.rewrite_kept[t] == 1)) continue;
        const TurnKey key{rank, row, t};
        keep_first(fallbacks_, kFallbackExamples, key);
        auto it = first_fallback_by_reason_.find(reason);
        if (it == first_fallback_by_reason_.end()) first_fallback_by_reason_.emplace(reason, key);
        else if (key < it->second) it->second = key;
      }
    }
    bool q = r.selected_questions != -1 && usable(r.question_score);
    bool a = r.selected_answers != -1 && usable(r.answer_score);
    if (!q && !a) return;
    Ends& e = ends_[r.subset];
    if (q) {
      keep_ranked(e.top_q, kExamplesPerEnd, false, r.question_score, r.key, row);
      keep_ranked(e.bottom_q, 2 * kExamplesPerEnd, true, r.question_score, r.key, row);
    }
    if (a) {
      keep_ranked(e.top_a, kExamplesPerEnd, false, r.answer_score, r.key, row);
      keep_ranked(e.bottom_a, 2 * kExamplesPerEnd, true, r.answer_score, r.key, row);
    }
  }

  Examples examples() const {
    Examples ex;
    for (const TurnKey& k : kept_rewrites_) ex.kept_rewrites.push_back({std::get<1>(k), std::get<2>(k)});
    // Fallbacks: the first turn of each reason (the earliest reasons), then the first turns of all.
    std::vector<TurnKey> firsts, chosen;
    for (const auto& [reason, key] : first_fallback_by_reason_) firsts.push_back(key);
    std::sort(firsts.begin(), firsts.end());
    auto choose = [&](const std::vector<TurnKey>& from) {
      for (const TurnKey& k : from)
        if (chosen.size() < kFallbackExamples && std::find(chosen.begin(), chosen.end(), k) == chosen.end())
          chosen.push_back(k);
    };
    choose(firsts);
    choose(fallbacks_);
    std::sort(chosen.begin(), chosen.end());
    for (const TurnKey& k : chosen) ex.fallbacks.push_back({std::get<1>(k), std::get<2>(k)});
    auto rows_of = [](const std::vector<Candidate>& cs) {
      std::vector<std::uint64_t> out;
      for (const Candidate& c : cs) out.push_back(c.row);
      return out;
    };
    for (const auto& [subset, e] : ends_) {
      SubsetExamples& s = ex.by_subset[subset];
      s.by_answer = !e.top_a.empty();
      s.top = rows_of(s.by_answer ? e.top_a : e.top_q);
      // Bottom: the worst rows not already shown as top (the stream kept 2k to allow for overlap).
      for (std::uint64_t row : rows_of(s.by_answer ? e.bottom_a : e.bottom_q)) {
        if (s.bottom.size() == kExamplesPerEnd) break;
        if (std::find(s.top.begin(), s.top.end(), row) == s.top.end()) s.bottom.push_back(row);
      }
    }
    return ex;
  }

 private:
  struct Ends {
    std::vector<Candidate> top_q, bottom_q, top_a, bottom_a;
  };
  std::map<std::string, Ends> ends_;
  std::vector<TurnKey> kept_rewrites_;                          // first kRewriteExamples, sorted
  std::vector<TurnKey> fallbacks_;                              // first kFallbackExamples, sorted
  std::map<std::string, TurnKey> first_fallback_by_reason_;     // reason -> its first turn
};

// ---- statistics over the rows

struct Threshold {
  bool recorded = false;  // the summary has the subset's threshold key
  bool has = false;       // it is a number (null: nothing kept)
  double value = 0;
};

struct Histogram {
  std::uint64_t scored = 0;   // rows the stage considered (decision 0 or 1)
  std::uint64_t plotted = 0;  // of them, with a usable score
  std::uint64_t kept = 0;     // of them, kept by the stage
  double lo = std::numeric_limits<double>::infinity();   // score range of the plotted rows
  double hi = -std::numeric_limits<double>::infinity();
  std::vector<std::uint64_t> kept_bins = std::vector<std::uint64_t>(kBins, 0);
  std::vector<std::uint64_t> dropped_bins = std::vector<std::uint64_t>(kBins, 0);
};

struct SubsetStats {
  std::uint64_t input = 0;
  std::uint64_t valid = 0;
  std::uint64_t kept = 0;  // final decision
  Histogram f;             // stage 1: question scores
  Histogram g;             // stage 2: mean answer scores
  Threshold f_threshold;
  Threshold g_threshold;
};

struct StatusCounts {
  std::uint64_t records = 0;
  std::uint64_t kept = 0;
  std::uint64_t dropped = 0;
  std::uint64_t not_considered = 0;
};

Threshold threshold_of(const json& summary, const std::string& stage, const std::string& subset) {
  const json& entry = member(member(member(member(summary, "stages"), stage), "by_subset"), subset);
  Threshold t;
  t.recorded = entry.is_object() && entry.contains("threshold");
  const json& v = member(entry, "threshold");
  if (v.is_number() && usable(v.get<double>())) {
    t.has = true;
    t.value = v.get<double>();
  }
  return t;
}

void widen(Histogram& h, const Threshold& t) {
  if (t.has) {
    h.lo = std::min(h.lo, t.value);
    h.hi = std::max(h.hi, t.value);
  }
  if (!(h.lo <= h.hi)) {  // nothing plotted, no threshold
    h.lo = 0;
    h.hi = 1;
  }
  double scale = std::max({1.0, std::fabs(h.lo), std::fabs(h.hi)});
  if (h.hi - h.lo < 1e-9 * scale) {  // one distinct value
    h.lo -= 0.5;
    h.hi += 0.5;
  }
}

int bin_of(const Histogram& h, double v) {
  double b = std::floor((v - h.lo) / (h.hi - h.lo) * kBins);
  if (!(b >= 0)) return 0;
  return b >= kBins ? kBins - 1 : int(b);
}

// ---- SVG

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `target` ticks over span.
double nice_step(double span, int target) {
  double raw = span / target;
  if (!(raw > 0) || !std::isfinite(raw)) return 1;
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double f = raw / mag;
  double nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return nice * mag;
}

int step_precision(double step) {
  int p = int(-std::floor(std::log10(step) + 1e-9));
  return std::clamp(p, 0, 8);
}

// Tick values k*step within [lo, hi].
std::vector<double> ticks(double lo, double hi, double step) {
  std::vector<double> out;
  double k0 = std::ceil(lo / step - 1e-9), k1 = std::floor(hi / step + 1e-9);
  for (double k = k0; k <= k1 && out.size() < 50; k += 1) out.push_back(k * step);
  return out;
}

struct Frame {
  double width = 560, height = 300;          // px
  double left = 60, right = 20, top = 34;    // px margins around the plot area
  double bottom = 78;                        // px: tick labels, axis title, legend
  double plot_w() const { return width - left - right; }
  double plot_h() const { return height - top - bottom; }
  double base() const { return top + plot_h(); }
};

std::string svg_open(const Frame& fr, const std::string& title) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" role=\"img\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n<title>{2}</title>\n"
      "<rect x=\"0\" y=\"0\" width=\"{0}\" height=\"{1}\" fill=\"#ffffff\"/>\n"
      "<text x=\"{3}\" y=\"18\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">{2}</text>\n",
      px(fr.width), px(fr.height), esc(title), px(fr.width / 2));
}

// Horizontal grid lines and labels of the y ticks from 0 to ymax by `ystep`, and the axis titles.
std::string svg_axes(const Frame& fr, double ymax, double ystep, const std::string& x_title,
                     const std::string& y_title) {
  std::string s;
  int prec = step_precision(ystep);
  for (double t : ticks(0, ymax, ystep)) {
    double y = fr.base() - t / ymax * fr.plot_h();
    s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#e0e0e0\"/>\n", px(fr.left), px(y),
                     px(fr.left + fr.plot_w()));
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", px(fr.left - 6), px(y + 4),
                     fixed(t, prec));
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", px(fr.left + fr.plot_w() / 2),
                   px(fr.base() + 34), esc(x_title));
  s += fmt::format("<text x=\"14\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {0})\">{1}</text>\n",
                   px(fr.top + fr.plot_h() / 2), esc(y_title));
  return s;
}

// The x and y axis lines, drawn over the bars.
std::string svg_axis_lines(const Frame& fr) {
  return fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#000000\"/>\n"
                     "<line x1=\"{0}\" y1=\"{2}\" x2=\"{3}\" y2=\"{2}\" stroke=\"#000000\"/>\n",
                     px(fr.left), px(fr.top), px(fr.base()), px(fr.left + fr.plot_w()));
}

struct LegendItem {
  std::string kind;  // "box" or "line"
  std::string colour;
  double opacity = 1;
  std::string label;
};

std::string svg_legend(const Frame& fr, const std::vector<LegendItem>& items) {
  std::string s;
  double x = fr.left, y = fr.base() + 56;
  for (const LegendItem& it : items) {
    if (it.kind == "line")
      s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"2\"/>\n",
                       px(x), px(y - 4), px(x + 14), it.colour);
    else
      s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"10\" fill=\"{}\" fill-opacity=\"{}\" "
                       "stroke=\"#666666\" stroke-width=\"0.5\"/>\n",
                       px(x), px(y - 9), it.colour, fixed(it.opacity, 2));
    s += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", px(x + 18), px(y), esc(it.label));
    x += 18 + 6.5 * double(it.label.size()) + 16;  // px: rough width of the label
  }
  return s;
}

std::string histogram_svg(const std::string& title, const std::string& x_title, const Histogram& h,
                          const Threshold& t) {
  Frame fr;
  std::string s = svg_open(fr, title);
  std::uint64_t max_bin = 0;
  for (int b = 0; b < kBins; ++b) max_bin = std::max(max_bin, h.kept_bins[b] + h.dropped_bins[b]);
  double ystep = std::max(1.0, std::round(nice_step(double(std::max<std::uint64_t>(max_bin, 1)), 4)));
  double ymax = std::max(1.0, std::ceil(1.15 * double(max_bin) / ystep)) * ystep;  // headroom for the label
  auto xmap = [&](double v) { return fr.left + (v - h.lo) / (h.hi - h.lo) * fr.plot_w(); };
  // Kept region, under everything else.
  if (t.has)
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" fill-opacity=\"0.12\"/>\n",
                     px(xmap(t.value)), px(fr.top), px(fr.left + fr.plot_w() - xmap(t.value)), px(fr.plot_h()),
                     kKeptColour);
  s += svg_axes(fr, ymax, ystep, x_title, "records");
  // Bars: kept at the bottom, dropped stacked on top.
  double bw = fr.plot_w() / kBins;
  double gap = bw > 4 ? 1 : 0;
  for (int b = 0; b < kBins; ++b) {
    double hk = double(h.kept_bins[b]) / ymax * fr.plot_h();
    double hd = double(h.dropped_bins[b]) / ymax * fr.plot_h();
    double x = fr.left + b * bw;
    if (h.kept_bins[b])
      s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>\n", px(x), px(fr.base() - hk),
                       px(bw - gap), px(hk), kKeptColour);
    if (h.dropped_bins[b])
      s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>\n", px(x),
                       px(fr.base() - hk - hd), px(bw - gap), px(hd), kDroppedColour);
  }
  s += svg_axis_lines(fr);
  // x ticks over the data's range.
  double xstep = nice_step(h.hi - h.lo, 6);
  int prec = step_precision(xstep);
  for (double v : ticks(h.lo, h.hi, xstep)) {
    double x = xmap(v);
    s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#000000\"/>\n", px(x),
                     px(fr.base()), px(fr.base() + 4));
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", px(x), px(fr.base() + 16),
                     fixed(v, prec));
  }
  if (h.plotted == 0)
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666666\">no scored records</text>\n",
                     px(fr.left + fr.plot_w() / 2), px(fr.top + fr.plot_h() / 2));
  std::vector<LegendItem> legend = {{"box", kKeptColour, 1, "kept"}, {"box", kDroppedColour, 1, "dropped"}};
  if (t.has) {
    double x = xmap(t.value);
    s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"{3}\" stroke-width=\"2\"/>\n", px(x),
                     px(fr.top), px(fr.base()), kThresholdColour);
    bool right_side = x > fr.left + 0.7 * fr.plot_w();
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"{}\" fill=\"{}\" stroke=\"#ffffff\" stroke-width=\"3\" "
                     "paint-order=\"stroke\">threshold {}</text>\n",
                     px(right_side ? x - 4 : x + 4), px(fr.top + 12), right_side ? "end" : "start", kThresholdColour,
                     fixed(t.value, 4));
    legend.push_back({"line", kThresholdColour, 1, "threshold"});
    legend.push_back({"box", kKeptColour, 0.12, "score \u2265 threshold"});
  }
  s += svg_legend(fr, legend);
  s += "</svg>\n";
  return s;
}

std::string busy_svg(const std::string& stage, const std::vector<double>& busy) {
  Frame fr;
  std::string s = svg_open(fr, stage + ": busy time per rank");
  double max = 0, sum = 0;
  for (double b : busy) {
    max = std::max(max, b);
    sum += b;
  }
  double mean = busy.empty() ? 0 : sum / double(busy.size());
  double ystep = nice_step(max > 0 ? max : 1, 4);
  double ymax = std::max(1.0, std::ceil(max / ystep - 1e-9)) * ystep;
  s += svg_axes(fr, ymax, ystep, "rank", "busy time (s)");
  double bw = fr.plot_w() / double(std::max<std::size_t>(busy.size(), 1));
  double gap = bw > 6 ? bw * 0.2 : 0;
  std::size_t label_every = std::max<std::size_t>(1, (busy.size() + 15) / 16);
  for (std::size_t r = 0; r < busy.size(); ++r) {
    double hb = busy[r] / ymax * fr.plot_h();
    double x = fr.left + double(r) * bw;
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>\n", px(x + gap / 2),
                     px(fr.base() - hb), px(bw - gap), px(hb), kBusyColour);
    if (r % label_every == 0)
      s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", px(x + bw / 2),
                       px(fr.base() + 16), r);
  }
  s += svg_axis_lines(fr);
  double ym = fr.base() - mean / ymax * fr.plot_h();
  s += fmt::format(
      "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"2\" stroke-dasharray=\"6 3\"/>\n",
      px(fr.left), px(ym), px(fr.left + fr.plot_w()), kThresholdColour);
  s += svg_legend(fr, {{"box", kBusyColour, 1, "busy time"}, {"line", kThresholdColour, 1, "mean"}});
  s += "</svg>\n";
  return s;
}

// ---- HTML pieces

const char* kStyle = R"(<style>
body { font-family: sans-serif; font-size: 14px; color: #111111; background: #ffffff; margin: 24px; max-width: 1180px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #cccccc; } h3 { font-size: 15px; }
table { border-collapse: collapse; margin: 8px 0 16px 0; }
th, td { border: 1px solid #cccccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.t { white-space: pre-wrap; max-width: 380px; overflow-wrap: anywhere; }
code { font-size: 12px; overflow-wrap: anywhere; }
figure { display: inline-block; margin: 4px 12px 12px 0; }
figcaption { font-size: 12px; color: #444444; max-width: 560px; }
p.note { color: #444444; }
@media print { body { margin: 0; } h2, h3 { break-after: avoid; } figure, tr, tbody.pair { break-inside: avoid; } }
</style>
)";

std::string num_cell(std::uint64_t v) { return fmt::format("<td class=\"n\">{}</td>", v); }

std::string threshold_text(const Threshold& t) {
  if (t.has) return fixed(t.value, 4);
  if (t.recorded) return "none (nothing kept)";
  return "\u2014";
}

std::string histogram_caption(const Histogram& h, const Threshold& t) {
  std::string c = fmt::format("{} scored, {} kept ({})", h.scored, h.kept, percent(h.kept, h.scored));
  if (h.scored > h.plotted) c += fmt::format(", {} without a finite score (not plotted)", h.scored - h.plotted);
  c += "; threshold " + threshold_text(t);
  if (h.plotted) c += fmt::format("; scores from {} to {}", fixed(h.lo, 4), fixed(h.hi, 4));
  return c;
}

std::string example_rows_html(const std::map<std::uint64_t, ShardRow>& shown, const std::vector<std::uint64_t>& which,
                              const char* label, bool by_answer) {
  std::string s;
  for (std::size_t k = 0; k < which.size(); ++k) {
    const ShardRow& r = shown.at(which[k]);
    ShownTurn t = turn_of(r.record, 0);
    double score = by_answer ? r.answer_score : r.question_score;
    std::string q, a;
    if (t.parsed) {
      q = esc_cut(t.question, kTextLimit);
      a = esc_cut(t.answer, kTextLimit);
    } else if (r.record.empty()) {
      q = "<i>record text not loaded</i>";
    } else {
      q = "<i>record is not a conversation:</i> " + esc_cut(r.record, kTextLimit);
    }
    s += fmt::format("<tr><td>{} {}</td><td><code>{}</code></td><td><code>{}</code></td><td class=\"n\">{}</td>"
                     "<td class=\"n\">{}</td><td>{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td></tr>\n",
                     label, k + 1, esc_cut(r.id, kFieldLimit), esc_cut(r.image, kFieldLimit), fixed(score, 4),
                     fixed(r.question_score, 4), r.kept == 1 ? fmt::format("yes (#{})", r.global_rank + 1) : "no", q, a);
  }
  return s;
}

std::vector<std::string> stages_in_order(const json& obj) {
  std::vector<std::string> out;
  if (!obj.is_object()) return out;
  for (const std::string& s : stage_order())
    if (obj.contains(s)) out.push_back(s);
  for (const auto& [k, v] : obj.items())
    if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
  return out;
}

// ---- the rewrite stage (stage 3)

// A count of summary.json: a non-negative integer, else none.
std::optional<std::uint64_t> count_value(const json& v) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return std::uint64_t(v.get<std::int64_t>());
  return std::nullopt;
}

std::string count_cell(const json& v) {
  std::optional<std::uint64_t> c = count_value(v);
  return c ? num_cell(*c) : "<td class=\"n\">\u2014</td>";
}

// part / whole as a percentage cell; a dash when either is not a count.
std::string share_cell(const json& part, const json& whole) {
  std::optional<std::uint64_t> p = count_value(part), w = count_value(whole);
  return fmt::format("<td class=\"n\">{}</td>", p && w ? percent(*p, *w) : "\u2014");
}

// What a fallback reason means (docs/rewrite.md); "" for a reason this report does not know.
const char* fallback_meaning(const std::string& reason) {
  static const std::map<std::string, const char*> kMeaning = {
      {"too_long", "the rewrite or review prompt does not fit the model's context"},
      {"truncated", "the reply reached rewrite_max_new_tokens before it ended"},
      {"malformed", "the reply is not one \"Question:\" line and one \"Answer:\" line"},
      {"empty", "the rewritten question or answer is empty"},
      {"image_tag", "the reply writes an image placeholder tag"},
      {"length_ratio", "the rewrite is too short or too long for the original (rewrite_min_ratio, rewrite_max_ratio)"},
      {"bad_image", "the sample's image could not be read (all its turns keep their originals)"},
  };
  auto it = kMeaning.find(reason);
  return it == kMeaning.end() ? "" : it->second;
}

template <typename T>
T item_or(const std::vector<T>& v, std::size_t i, T fallback) {
  return i < v.size() ? v[i] : fallback;
}

// The "Rewrite" section: counts of stages.rewrite (samples and turns, fallback reasons, per
// subset) and the examples, whose rows are in `shown`.
std::string rewrite_section(const json& rewrite, const Examples& examples,
                            const std::map<std::uint64_t, ShardRow>& shown) {
  std::string h = "<h2>Rewrite</h2>\n";
  h += "<p class=\"note\">Stage 3 rewrites each turn of every curated sample with the model's inner LLM and has the "
       "model review original against rewrite, in both orders; curated.json holds a turn's rewrite where the review "
       "preferred it. A turn <i>falls back</i> (keeps its original, unreviewed) when its rewrite cannot be used. A "
       "sample counts as <i>kept the rewrite</i> when at least one of its turns uses its rewrite, as <i>fell "
       "back</i> when none does and a turn fell back, else as <i>kept the original</i>.</p>\n";

  // Samples and turns.
  const json& turns = member(rewrite, "turns");
  h += "<table>\n<tr><th></th><th>samples</th><th>of samples</th><th>turns</th><th>of turns</th></tr>\n";
  static const std::pair<const char*, const char*> kRows[] = {{"attempted", "attempted"},
                                                              {"kept_rewrite", "kept the rewrite"},
                                                              {"kept_original", "kept the original (after review)"},
                                                              {"fallback", "fell back"}};
  for (const auto& [key, label] : kRows)
    h += fmt::format("<tr><th>{}</th>{}{}{}{}</tr>\n", label, count_cell(member(rewrite, key)),
                     share_cell(member(rewrite, key), member(rewrite, "attempted")), count_cell(member(turns, key)),
                     share_cell(member(turns, key), member(turns, "attempted")));
  h += "</table>\n";

  // Fallback reasons, most frequent first.
  const json& by_reason = member(turns, "by_reason");
  if (by_reason.is_object() && !by_reason.empty()) {
    std::vector<std::pair<std::string, std::uint64_t>> reasons;
    for (const auto& [reason, n] : by_reason.items()) reasons.emplace_back(reason, count_value(n).value_or(0));
    std::stable_sort(reasons.begin(), reasons.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    h += "<h3>Fallback reasons</h3>\n<table>\n<tr><th>reason</th><th>meaning</th><th>turns</th>"
         "<th>of turns that fell back</th><th>of all turns</th></tr>\n";
    for (const auto& [reason, n] : reasons)
      h += fmt::format("<tr><td><code>{}</code></td><td>{}</td>{}{}{}</tr>\n", esc_cut(reason, kFieldLimit),
                       esc(fallback_meaning(reason)), count_cell(by_reason[reason]),
                       share_cell(by_reason[reason], member(turns, "fallback")),
                       share_cell(by_reason[reason], member(turns, "attempted")));
    h += "</table>\n";
  } else if (by_reason.is_object()) {
    h += "<p class=\"note\">No turn fell back.</p>\n";
  }

  // Per subset.
  const json& by_subset = member(rewrite, "by_subset");
  if (by_subset.is_object() && !by_subset.empty()) {
    h += "<h3>Rewrites kept per subset</h3>\n<table>\n<tr><th>subset</th><th>samples attempted</th>"
         "<th>kept the rewrite</th><th>share</th></tr>\n";
    for (const auto& [subset, c] : by_subset.items())
      h += fmt::format("<tr><td>{}</td>{}{}{}</tr>\n", esc_cut(subset_label(subset), kFieldLimit),
                       count_cell(member(c, "attempted")), count_cell(member(c, "kept_rewrite")),
                       share_cell(member(c, "kept_rewrite"), member(c, "attempted")));
    h += "</table>\n";
  }

  // Before and after.
  h += "<h3>Before and after</h3>\n";
  if (examples.kept_rewrites.empty()) {
    h += "<p class=\"note\">No sample uses a rewrite.</p>\n";
  } else {
    h += fmt::format("<p class=\"note\">The first {} samples in curated.json order that use a rewrite: their first "
                     "rewritten turn, original and rewrite (cut to {} characters, image tag removed), and the "
                     "review's probability that the rewrite is better: the mean of both orders (order 1 shows the "
                     "original first, order 2 the rewrite).</p>\n",
                     examples.kept_rewrites.size(), kTextLimit);
    h += "<table>\n<thead><tr><th>id</th><th>turn</th><th></th><th>before</th><th>after</th><th>P(rewrite better)</th>"
         "</tr></thead>\n";
    for (const TurnExample& e : examples.kept_rewrites) {
      const ShardRow& r = shown.at(e.row);
      const std::size_t t = e.turn;
      ShownTurn before = turn_of(r.record, t);
      std::string q_before, a_before;
      if (before.parsed) {
        q_before = esc_cut(before.question, kTextLimit);
        a_before = esc_cut(before.answer, kTextLimit);
      } else {
        q_before = r.record.empty() ? "<i>record text not loaded</i>"
                                    : fmt::format("<i>the record has no turn {}</i>", t + 1);
      }
      const float nan = std::numeric_limits<float>::quiet_NaN();
      h += fmt::format(
          "<tbody class=\"pair\"><tr><td rowspan=\"2\"><code>{}</code></td><td rowspan=\"2\" class=\"n\">{} of {}</td>"
          "<th>question</th>"
          "<td class=\"t\">{}</td><td class=\"t\">{}</td><td rowspan=\"2\" class=\"n\">{}<br>order 1: {}<br>"
          "order 2: {}</td></tr>\n",
          esc_cut(r.id, kFieldLimit), t + 1, r.rewrite_kept.size(), q_before,
          esc_cut(text_without_image(item_or(r.rewritten_questions, t, std::string())), kTextLimit),
          fixed(item_or(r.review_p, t, nan), 3), fixed(item_or(r.review_p_order1, t, nan), 3),
          fixed(item_or(r.review_p_order2, t, nan), 3));
      h += fmt::format("<tr><th>answer</th><td class=\"t\">{}</td><td class=\"t\">{}</td></tr></tbody>\n", a_before,
                       esc_cut(item_or(r.rewritten_answers, t, std::string()), kTextLimit));
    }
    h += "</table>\n";
  }

  // Fallbacks.
  if (!examples.fallbacks.empty()) {
    h += fmt::format("<h3>Fallbacks</h3>\n<p class=\"note\">Up to {} turns whose rewrite could not be used (one per "
                     "reason where there are several), in curated.json order: the reason and the start of the "
                     "model's reply (cut to {} characters).</p>\n",
                     kFallbackExamples, kReplyLimit);
    h += "<table>\n<tr><th>id</th><th>turn</th><th>reason</th><th>reply</th></tr>\n";
    for (const TurnExample& e : examples.fallbacks) {
      const ShardRow& r = shown.at(e.row);
      std::string reply = item_or(r.rewrite_replies, e.turn, std::string());
      h += fmt::format("<tr><td><code>{}</code></td><td class=\"n\">{} of {}</td><td><code>{}</code></td>"
                       "<td class=\"t\">{}</td></tr>\n",
                       esc_cut(r.id, kFieldLimit), e.turn + 1, r.rewrite_reasons.size(),
                       esc_cut(item_or(r.rewrite_reasons, e.turn, std::string()), kFieldLimit),
                       reply.empty() ? "<i>no reply</i>" : esc_cut(reply, kReplyLimit));
    }
    h += "</table>\n";
  }
  return h;
}

// ---- the report, gathered from the rows in two passes

// What the report shows, with bounded memory: per-subset, per-status and per-reason
// counters, the histograms, a few example candidates per subset and, in the end, the example
// rows themselves; never a row per record. Use:
//   ReportBuilder b(summary);
//   for each row, in row order: b.count(row, position);
//   b.finish_counting();
//   for each row, in the same order: b.bin(row, position);
//   b.set_record(position, text) for the rows of example_rows() whose text was not in the rows;
//   b.render(meta).
// `summary` (summary.json's object) must outlive the builder.
class ReportBuilder {
 public:
  explicit ReportBuilder(const json& summary) : summary_(summary) {
    const json& stages = member(summary, "stages");
    has_stage2_ = stages.is_object() && stages.contains("select_answers");
    // Subsets: those of the summary and of the rows, sorted by name.
    for (const auto& [k, v] : member(summary, "by_subset").items()) subsets_[k];
    for (const char* stage : {"select_questions", "select_answers"})
      for (const auto& [k, v] : member(member(stages, stage), "by_subset").items()) subsets_[k];
  }

  // Pass 1: counts, score ranges and example candidates.
  void count(const ShardRow& r, std::uint64_t row) {
    ++rows_;
    if (r.selected_answers != -1) has_stage2_ = true;
    SubsetStats& st = subsets_[r.subset];
    ++st.input;
    st.valid += r.status == Status::valid;
    st.kept += r.kept == 1;
    StatusCounts& sc = by_status_[status_name(r.status)];
    ++sc.records;
    if (r.kept == 1) ++sc.kept;
    else if (r.kept == 0) ++sc.dropped;
    else ++sc.not_considered;
    if (r.reason != Reason::none) ++by_reason_[{reason_name(r.reason), status_name(r.status)}];
    truncated_ += r.truncated == 1;
    auto range = [](Histogram& h, double v, std::int8_t decision) {
      if (decision == -1) return;
      ++h.scored;
      h.kept += decision == 1;
      if (!usable(v)) return;
      ++h.plotted;
      h.lo = std::min(h.lo, v);
      h.hi = std::max(h.hi, v);
    };
    range(st.f, r.question_score, r.selected_questions);
    range(st.g, r.answer_score, r.selected_answers);
    chooser_.add(r, row);
  }

  // Between the passes: thresholds, histogram ranges, the examples.
  void finish_counting() {
    for (auto& [name, st] : subsets_) {
      st.f_threshold = threshold_of(summary_, "select_questions", name);
      st.g_threshold = threshold_of(summary_, "select_answers", name);
      widen(st.f, st.f_threshold);
      widen(st.g, st.g_threshold);
    }
    examples_ = chooser_.examples();
    // Rows shown with their record text, and (fallback examples) without it.
    for (const TurnExample& e : examples_.kept_rewrites) text_rows_.insert(e.row);
    for (const auto& [subset, s] : examples_.by_subset) {
      text_rows_.insert(s.top.begin(), s.top.end());
      text_rows_.insert(s.bottom.begin(), s.bottom.end());
    }
    for (std::uint64_t row : text_rows_) shown_[row];
    for (const TurnExample& e : examples_.fallbacks) shown_[e.row];
  }

  // Pass 2: histogram bins, and a copy of the example rows.
  void bin(const ShardRow& r, std::uint64_t row) {
    SubsetStats& st = subsets_[r.subset];
    if (r.selected_questions != -1 && usable(r.question_score))
      ++(r.selected_questions == 1 ? st.f.kept_bins : st.f.dropped_bins)[bin_of(st.f, r.question_score)];
    if (r.selected_answers != -1 && usable(r.answer_score))
      ++(r.selected_answers == 1 ? st.g.kept_bins : st.g.dropped_bins)[bin_of(st.g, r.answer_score)];
    auto it = shown_.find(row);
    if (it != shown_.end()) it->second = r;
  }

  // The rows whose record text the report shows (after finish_counting): sorted, unique.
  std::vector<std::uint64_t> example_rows() const { return {text_rows_.begin(), text_rows_.end()}; }

  void set_record(std::uint64_t row, std::string text) { shown_.at(row).record = std::move(text); }

  std::string render(const ShardMeta& meta) const {
    const json& stages = member(summary_, "stages");

    std::string h;
    h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
    h += "<title>align2 curation report</title>\n";
    h += kStyle;
    h += "</head>\n<body>\n<h1>align2 curation report</h1>\n";

    // Header facts.
    std::uint64_t input = member(summary_, "input_records").is_number_unsigned()
                              ? member(summary_, "input_records").get<std::uint64_t>() : rows_;
    std::uint64_t kept =
        member(summary_, "kept").is_number_unsigned() ? member(summary_, "kept").get<std::uint64_t>() : 0;
    auto valid_it = by_status_.find("valid");
    std::uint64_t valid = valid_it == by_status_.end() ? 0 : valid_it->second.records;
    h += "<table>\n";
    h += fmt::format("<tr><th>input records</th><td class=\"n\">{}</td></tr>\n", input);
    h += fmt::format("<tr><th>valid records</th><td class=\"n\">{}</td></tr>\n", valid);
    h += fmt::format("<tr><th>kept</th><td class=\"n\">{}</td></tr>\n", kept);
    h += fmt::format("<tr><th>kept / input</th><td class=\"n\">{}</td></tr>\n", percent(kept, input));
    h += fmt::format("<tr><th>kept / valid</th><td class=\"n\">{}</td></tr>\n", percent(kept, valid));
    if (truncated_)
      h += fmt::format("<tr><th>rows with a reward-model input cut to max_length</th><td class=\"n\">{}</td></tr>\n",
                       truncated_);
    std::string version = meta.align2_version;
    if (version.empty() && member(summary_, "align2_version").is_string())
      version = member(summary_, "align2_version").get<std::string>();
    h += fmt::format("<tr><th>align2 version</th><td><code>{}</code></td></tr>\n",
                     version.empty() ? "unknown" : esc_cut(version, kFieldLimit));
    static const std::set<std::string> kShown = {"input_records", "kept", "by_status", "by_reason", "by_subset",
                                                 "stages", "timings", "fingerprints", "align2_version"};
    if (summary_.is_object()) {
      for (const auto& [k, v] : summary_.items())  // fingerprints first, then other facts
        if (k.size() > 12 && k.compare(k.size() - 12, 12, "_fingerprint") == 0)
          h += fmt::format("<tr><th>{}</th><td><code>{}</code></td></tr>\n", esc(k), cell(v));
      for (const auto& [k, v] : member(summary_, "fingerprints").items())
        h += fmt::format("<tr><th>fingerprint: {}</th><td><code>{}</code></td></tr>\n", esc(k), cell(v));
      for (const auto& [k, v] : summary_.items())
        if (!kShown.count(k) && !(k.size() > 12 && k.compare(k.size() - 12, 12, "_fingerprint") == 0) &&
            v.is_primitive())
          h += fmt::format("<tr><th>{}</th><td>{}</td></tr>\n", esc(k), cell(v));
    }
    h += "</table>\n";

    // Counts.
    h += "<h2>Records by status</h2>\n<table>\n<tr><th>status</th><th>records</th><th>kept</th><th>dropped</th>"
         "<th>not considered</th></tr>\n";
    for (const auto& [status, c] : by_status_)
      h += fmt::format("<tr><td>{}</td>{}{}{}{}</tr>\n", esc(status), num_cell(c.records), num_cell(c.kept),
                       num_cell(c.dropped), num_cell(c.not_considered));
    h += "</table>\n";
    h += "<p class=\"note\">Kept and dropped: the final decision of the cascade for valid records. Not considered: "
         "records that could not be scored (their status says why).</p>\n";
    if (!by_reason_.empty()) {
      h += "<h2>Records by reason</h2>\n<table>\n<tr><th>reason</th><th>status</th><th>records</th></tr>\n";
      for (const auto& [rs, n] : by_reason_)
        h += fmt::format("<tr><td>{}</td><td>{}</td>{}</tr>\n", esc(rs.first), esc(rs.second), num_cell(n));
      h += "</table>\n";
    }

    // Stages: a rewrite-only run (align2 rewrite) has no selection: no score columns, plots or examples.
    std::vector<std::string> stage_names = stages_in_order(stages);
    std::vector<std::string> selection_stages;
    for (const std::string& s : stage_names)
      if (s != "rewrite") selection_stages.push_back(s);
    bool selecting = !selection_stages.empty() || has_stage2_;
    for (const auto& [name, st] : subsets_) selecting = selecting || st.f.scored > 0;

    h += "<h2>Subsets</h2>\n<table>\n<tr><th>subset</th><th>input</th><th>valid</th>";
    if (selecting) h += "<th>stage-1 scored</th><th>stage-1 kept</th><th>stage-1 threshold</th>";
    if (has_stage2_) h += "<th>stage-2 scored</th><th>stage-2 kept</th><th>stage-2 threshold</th>";
    h += "<th>kept</th><th>kept / valid</th></tr>\n";
    for (const auto& [name, st] : subsets_) {
      h += fmt::format("<tr><td>{}</td>{}{}", esc(subset_label(name)), num_cell(st.input), num_cell(st.valid));
      if (selecting)
        h += fmt::format("{}{}<td class=\"n\">{}</td>", num_cell(st.f.scored), num_cell(st.f.kept),
                         threshold_text(st.f_threshold));
      if (has_stage2_)
        h += fmt::format("{}{}<td class=\"n\">{}</td>", num_cell(st.g.scored), num_cell(st.g.kept),
                         threshold_text(st.g_threshold));
      h += fmt::format("{}<td class=\"n\">{}</td></tr>\n", num_cell(st.kept), percent(st.kept, st.valid));
    }
    h += "</table>\n";

    if (selecting) {
      h += "<h2>Selection stages</h2>\n<table>\n<tr><th>stage</th><th>input</th><th>scored</th><th>kept</th>"
           "<th>fraction</th><th>one per image</th></tr>\n";
      for (const std::string& s : selection_stages) {
        const json& st = stages[s];
        h += fmt::format("<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>"
                         "<td class=\"n\">{}</td><td>{}</td></tr>\n",
                         esc(s), cell(member(st, "input")), cell(member(st, "scored")), cell(member(st, "kept")),
                         cell(member(st, "fraction")), cell(member(st, "one_per_image")));
      }
      h += "</table>\n";
    }

    // Score distributions.
    if (selecting) {
    h += "<h2>Score distributions</h2>\n";
    h += "<p class=\"note\">Per subset: stage 1 scores every valid record with the question reward model f and keeps "
         "the top \u03b1 fraction; stage 2 scores the survivors' turns with the answer reward model g and keeps the "
         "top \u03b2 by the mean. The vertical line is the stage's threshold (score of the last kept record); the "
         "shaded region is the scores at or above it.</p>\n";
    for (const auto& [name, st] : subsets_) {
      h += fmt::format("<h3>Subset {}</h3>\n", esc(subset_label(name)));
      h += "<figure>\n" + histogram_svg(subset_label(name) + ": stage 1, question score f", "question score f", st.f,
                                        st.f_threshold);
      h += "<figcaption>" + esc(histogram_caption(st.f, st.f_threshold)) + "</figcaption>\n</figure>\n";
      if (has_stage2_) {
        h += "<figure>\n" + histogram_svg(subset_label(name) + ": stage 2, mean answer score g", "mean answer score g",
                                          st.g, st.g_threshold);
        h += "<figcaption>" + esc(histogram_caption(st.g, st.g_threshold)) + "</figcaption>\n</figure>\n";
      }
    }
    }

    // Per-rank busy time.
    const json& timings = member(summary_, "timings");
    h += "<h2>Busy time per rank</h2>\n";
    std::vector<std::string> timed = stages_in_order(timings);
    if (timed.empty()) h += "<p class=\"note\">No timings recorded.</p>\n";
    for (const std::string& stage : timed) {
      std::vector<double> busy;
      const json& per_rank = member(timings[stage], "per_rank");
      if (per_rank.is_array())
        for (const json& r : per_rank) busy.push_back(std::max(0.0, number_or(member(r, "busy_s"), 0)));
      if (busy.empty()) {
        h += fmt::format("<p class=\"note\">{}: no per-rank timings.</p>\n", esc(stage));
        continue;
      }
      double max = *std::max_element(busy.begin(), busy.end()), sum = 0;
      for (double b : busy) sum += b;
      double mean = sum / double(busy.size());
      std::string imbalance = mean > 0 ? fixed(100.0 * (max / mean - 1), 1) + " %" : "n/a";
      std::string work;  // where the stage's results came from in this run
      const json& reused = member(timings[stage], "cache_reused");
      const json& scored = member(timings[stage], "model_scored");
      if (reused.is_number_unsigned() && scored.is_number_unsigned())
        work += fmt::format("; score cache: {} samples reused, {} scored by the model", reused.get<std::uint64_t>(),
                            scored.get<std::uint64_t>());
      const json& resumed = member(timings[stage], "resumed");
      if (resumed.is_number_unsigned() && resumed.get<std::uint64_t>() > 0)
        work += fmt::format("; {} items resumed from an earlier attempt's chunks", resumed.get<std::uint64_t>());
      h += "<figure>\n" + busy_svg(stage, busy);
      h += fmt::format("<figcaption>{} ranks; busy time max {} s, mean {} s; imbalance (max/mean \u2212 1) {}{}"
                       "</figcaption>\n</figure>\n",
                       busy.size(), fixed(max, 2), fixed(mean, 2), imbalance, esc(work));
    }

    // Rewrite stage.
    const json& rewrite = member(stages, "rewrite");
    if (rewrite.is_object()) h += rewrite_section(rewrite, examples_, shown_);

    // Examples.
    if (!selecting) return h + "</body>\n</html>\n";
    h += "<h2>Examples</h2>\n";
    h += fmt::format("<p class=\"note\">Per subset, the {0} highest and {0} lowest scored records by their final score "
                     "(the mean answer score g where stage 2 scored the subset, else the question score f); first "
                     "question and answer, cut to {1} characters.</p>\n",
                     kExamplesPerEnd, kTextLimit);
    if (examples_.by_subset.empty()) h += "<p class=\"note\">No scored records.</p>\n";
    for (const auto& [name, s] : examples_.by_subset) {
      h += fmt::format("<h3>Subset {}</h3>\n", esc(subset_label(name)));
      h += fmt::format("<table>\n<tr><th></th><th>id</th><th>image</th><th>{}</th><th>f</th><th>kept</th>"
                       "<th>question</th><th>answer</th></tr>\n",
                       s.by_answer ? "g (mean)" : "f");
      h += example_rows_html(shown_, s.top, "top", s.by_answer);
      h += example_rows_html(shown_, s.bottom, "bottom", s.by_answer);
      h += "</table>\n";
    }
    h += "</body>\n</html>\n";
    return h;
  }

 private:
  const json& summary_;
  bool has_stage2_ = false;
  std::uint64_t rows_ = 0;
  std::map<std::string, SubsetStats> subsets_;
  std::map<std::string, StatusCounts> by_status_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> by_reason_;  // (reason, status) -> records
  std::uint64_t truncated_ = 0;
  ExampleChooser chooser_;
  Examples examples_;
  std::set<std::uint64_t> text_rows_;        // example rows whose record text is shown
  std::map<std::uint64_t, ShardRow> shown_;  // example rows by position (text_rows_ and fallback examples)
};

constexpr std::uint64_t kBlockRows = 4096;  // rows read from scores.h5 at a time

}  // namespace

std::vector<std::uint64_t> report_example_rows(const std::vector<ShardRow>& rows) {
  const json summary = json::object();
  ReportBuilder b(summary);
  for (std::uint64_t i = 0; i < rows.size(); ++i) b.count(rows[i], i);
  b.finish_counting();
  return b.example_rows();
}

std::string render_report(const json& summary, const ShardMeta& meta, const std::vector<ShardRow>& rows) {
  ReportBuilder b(summary);
  for (std::uint64_t i = 0; i < rows.size(); ++i) b.count(rows[i], i);
  b.finish_counting();
  for (std::uint64_t i = 0; i < rows.size(); ++i) b.bin(rows[i], i);
  return b.render(meta);
}

std::string write_report(const std::string& output_dir) {
  fs::path dir(output_dir);
  std::string summary_path = (dir / "summary.json").string();
  std::string scores_path = (dir / "scores.h5").string();
  std::string report_path = (dir / "report.html").string();

  std::ifstream in(summary_path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot read the run summary (did the merge finish?)", summary_path));
  std::stringstream text;
  text << in.rdbuf();
  json summary = json::parse(text.str(), nullptr, false);
  if (summary.is_discarded()) throw std::runtime_error(fmt::format("{}: not JSON", summary_path));
  if (!summary.is_object() || !member(summary, "input_records").is_number_unsigned())
    throw std::runtime_error(
        fmt::format("{}: not an align2 run summary (no non-negative integer input_records)", summary_path));

  // Two passes over scores.h5 in blocks, without the record column; then the examples' texts.
  ReportBuilder b(summary);
  ShardMeta meta;
  {
    ShardReader reader(scores_path);
    meta = reader.meta();
    const std::uint64_t n = reader.rows();
    std::uint64_t input = summary["input_records"].get<std::uint64_t>();
    if (n != input)
      throw std::runtime_error(fmt::format("{}: holds {} rows, but {} says {} input records (files of different runs?)",
                                           scores_path, n, summary_path, input));
    for (int pass = 0; pass < 2; ++pass) {
      for (std::uint64_t begin = 0; begin < n; begin += kBlockRows) {
        std::uint64_t end = std::min(n, begin + kBlockRows);
        std::vector<ShardRow> block = reader.read_rows(begin, end, ShardReadOptions{/*records=*/false});
        for (std::uint64_t i = 0; i < block.size(); ++i) {
          if (pass == 0) b.count(block[i], begin + i);
          else b.bin(block[i], begin + i);
        }
      }
      if (pass == 0) b.finish_counting();
    }
  }
  std::vector<std::uint64_t> shown = b.example_rows();
  if (!shown.empty()) {
    std::vector<std::string> texts = read_shard_records(scores_path, shown);
    for (std::size_t j = 0; j < shown.size(); ++j) b.set_record(shown[j], std::move(texts[j]));
  }
  write_file_atomic(report_path, b.render(meta));
  return report_path;
}

}  // namespace align2
