#!/usr/bin/env python3
"""Writes a synthetic instruction pool of N records for bench/large_pool.sh.

Every record comes from the bundled real ones (examples/demo/data): the 60 LLaVA-Instruct
conversations (JSON arrays, subset "conversation") and the 90 typed COCO records (JSONL, subset
from their "type" field), each with its own id and its text varied: one of several question
phrasings, and an answer that names its sample number. The pool also holds what a real
collection holds, at fixed rates that never fall on the same record:
  - 1 record in 200 (n % 200 == 17) repeats the content of an earlier one under a new id
    (a duplicate);
  - 1 in 1,000 (n % 1000 == 503) names an image that is not in the image root (missing_image);
  - 1 in 5,000 (n % 5000 == 2221, always in a JSONL file) is cut short (not JSON).
Half the files are JSON arrays, half JSONL; records are dealt to them in turn, so record n
always has the same text whatever the file count. The first SUBSET records of each file are
also written, as subset files of the same kinds, for the curate run.

  make_large_pool.py --records N --files F --subset K --out DIR [--jobs J]
Prints one line per file: path, records, bytes.
"""
import argparse
import json
import multiprocessing
import os
import sys

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "demo", "data")
PHRASINGS = ["", "Looking at the picture: ", "Please answer. ", "In this image, ", "Question: ",
             "Tell me: ", "Consider the photo. ", "Briefly, "]
MARKS = ("@@ID@@", "@@QP@@", "@@AS@@", "@@IMG@@")


def templates():
    """Each bundled record as text pieces around its id, question prefix, answer suffix, image."""
    convs = json.load(open(os.path.join(SOURCE, "llava_instruct_60.json")))
    typed = [json.loads(line) for line in open(os.path.join(SOURCE, "coco2014_val_gpt4_qa_30x3.jsonl"))
             if line.strip()]
    out = {"array": [], "jsonl": []}
    for r in convs:
        own = r["image"]
        r = dict(r, id=MARKS[0], image=MARKS[3])
        turns = [dict(t) for t in r["conversations"]]
        turns[0]["value"] = MARKS[1] + turns[0]["value"]
        turns[-1]["value"] = turns[-1]["value"] + MARKS[2]
        r["conversations"] = turns
        out["array"].append(split(json.dumps(r, separators=(",", ":"))) + (own,))
    for r in typed:
        own = r["image"]
        r = dict(r, id=MARKS[0], image=MARKS[3], instruction=MARKS[1] + r["instruction"], output=r["output"] + MARKS[2])
        out["jsonl"].append(split(json.dumps(r, separators=(",", ":"))) + (own,))
    return out


def split(text):
    """The template's fixed pieces and, between them, which mark goes where (document order)."""
    found = sorted((text.index(m), m) for m in MARKS)
    assert all(text.count(m) == 1 for m in MARKS), text
    pieces, marks, at = [], [], 0
    for pos, mark in found:
        pieces.append(text[at:pos])
        marks.append(MARKS.index(mark))
        at = pos + len(mark)
    pieces.append(text[at:])
    return pieces, marks


def record(tpl, n, content_of):
    """Record number n's text; content_of is n for fresh content, an earlier n for a repeat. The
    image is the bundled record's own."""
    pieces, marks, image = tpl
    values = ["lp%010d" % n, PHRASINGS[content_of % len(PHRASINGS)], " (sample %d)" % content_of,
              "missing/%d.jpg" % n if n % 1000 == 503 else image]
    out = [pieces[0]]
    for i, m in enumerate(marks):
        out.append(values[m])
        out.append(pieces[i + 1])
    return "".join(out)


def write_file(args):
    path, kind, file_no, files, count, tpls = args
    start = file_no  # record numbers file_no, file_no + files, ...
    written = 0
    with open(path, "w", buffering=1 << 24) as f:
        if kind == "array":
            f.write("[\n")
        batch = []
        for k in range(count):
            n = start + k * files
            # A repeat takes the content of the record 97 places before it in the same file.
            content_of = n - 97 * files if n % 200 == 17 and k >= 97 else n
            tpl = tpls[kind][(content_of // files) % len(tpls[kind])]
            text = record(tpl, n, content_of)
            if kind == "jsonl" and n % 5000 == 2221:
                text = text[: len(text) // 2]  # cut short: not JSON
            if kind == "array":
                batch.append(("" if k == 0 else ",\n") + text)
            else:
                batch.append(text + "\n")
            if len(batch) == 4096:
                f.write("".join(batch))
                batch = []
            written += 1
        f.write("".join(batch))
        if kind == "array":
            f.write("\n]\n")
    return path, written, os.path.getsize(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--subset", type=int, default=0, help="records per subset file (0: none)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    a = ap.parse_args()
    if a.files < 2 or a.files % 2:
        sys.exit("make_large_pool.py: --files must be even and at least 2")
    tpls = templates()
    os.makedirs(a.out, exist_ok=True)
    tasks = []
    for f in range(a.files):
        kind = "array" if f % 2 == 0 else "jsonl"
        count = a.records // a.files + (1 if f < a.records % a.files else 0)
        ext = "json" if kind == "array" else "jsonl"
        tasks.append((os.path.join(a.out, "pool-%02d.%s" % (f, ext)), kind, f, a.files, count, tpls))
        if a.subset and f < 2:
            tasks.append((os.path.join(a.out, "subset-%02d.%s" % (f, ext)), kind, f, a.files, min(a.subset, count),
                          tpls))
    with multiprocessing.Pool(max(1, a.jobs)) as pool:
        for path, n, size in pool.imap(write_file, tasks):
            print("%s %d %d" % (path, n, size), flush=True)


if __name__ == "__main__":
    main()
