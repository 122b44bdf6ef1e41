#!/usr/bin/env python3
"""Checks a dataset written by `spatialsynth generate` against the schema documented in the README.

Usage: python3 tests/python/check_dataset.py <dataset_dir> <readme_path>

<dataset_dir> holds llava.jsonl, openai.jsonl, qa.parquet and dataset.json; <readme_path> is the repository
README, whose tables between `<!-- parquet-schema:start -->` / `<!-- parquet-schema:end -->` (columns
`| column | type | meaning |`, the type as pyarrow prints it) and `<!-- jsonl-schema:start -->` /
`<!-- jsonl-schema:end -->` (columns `| file | key | type | meaning |`, file = llava, openai or qa, the type a
JSON type name, `T|null` for nullable) document the files.

Needs the standard library and pyarrow. If Hugging Face `datasets` is importable, the Parquet file is also
loaded with `datasets.load_dataset("parquet", ...)`, which must decode `image` as an Image feature and give back
the same `messages`.

Exit status: 0 when everything matches, 1 on any mismatch (each listed), 2 on a usage error.
"""

import collections
import json
import math
import os
import re
import shutil
import sys
import tempfile

import pyarrow.parquet as pq

CATEGORIES = {"qualitative", "quantitative", "reasoning"}
JSON_TYPES = {"string", "number", "integer", "boolean", "array", "object"}
MAX_REPORTED = 50
# qa record keys the content checks need.
QA_NEEDED = {"id": "string", "frame": "string", "image": "string|null", "question": "string", "answer": "string",
             "category": "string"}


class Checker:
    """Collects failures; those sharing a `kind` are reported once, with a count of the others."""

    def __init__(self):
        self.failures = []
        self.kinds = {}

    def fail(self, message, kind=None):
        if kind is not None and kind in self.kinds:
            self.failures[self.kinds[kind]][1] += 1
            return
        if kind is not None:
            self.kinds[kind] = len(self.failures)
        self.failures.append([message, 0])

    def check(self, condition, message, kind=None):
        if not condition:
            self.fail(message, kind)
        return condition

    def messages(self):
        return [m + (f" (and {n} more like this)" if n else "") for m, n in self.failures]


def split_row(line):
    """The cells of a markdown table row, `\\|` unescaped, surrounding backticks removed."""
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    cells = [c.replace("\\|", "|").strip() for c in re.split(r"(?<!\\)\|", line)]
    return [c[1:-1] if len(c) >= 2 and c.startswith("`") and c.endswith("`") else c for c in cells]


def read_table(readme_text, name, header):
    """The rows (lists of cells) of the table between the `name` markers; raises ValueError if malformed."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    lines = readme_text.splitlines()
    starts = [i for i, l in enumerate(lines) if l.strip() == start]
    ends = [i for i, l in enumerate(lines) if l.strip() == end]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(f"the README needs exactly one `{start}` line followed by one `{end}` line")
    rows = [split_row(l) for l in lines[starts[0] + 1 : ends[0]] if l.strip().startswith("|")]
    if not rows or [c.lower() for c in rows[0]] != header:
        found = rows[0] if rows else "no table"
        raise ValueError(f"the {name} table's header must be | {' | '.join(header)} |, found {found}")
    body = [r for r in rows[1:] if not all(re.fullmatch(r":?-+:?", c) for c in r)]
    for r in body:
        if len(r) != len(header):
            raise ValueError(f"{name} table row {r} has {len(r)} cells, expected {len(header)}")
        if not all(r):
            raise ValueError(f"{name} table row {r} has an empty cell")
    return body


def json_type_ok(value, spec):
    """Whether `value` (parsed JSON) has the JSON type `spec` (`string`, ..., or `T|null`)."""
    for t in spec.split("|"):
        if t == "null" and value is None:
            return True
        if t == "string" and isinstance(value, str):
            return True
        if t == "boolean" and isinstance(value, bool):
            return True
        if t == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t == "array" and isinstance(value, list):
            return True
        if t == "object" and isinstance(value, dict):
            return True
    return False


def same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return a == b
    return type(a) is type(b) and a == b


def is_yes_no(question_type):
    return question_type.endswith("_predicate") or question_type == "pass_between"


def expected_messages(question, answer):
    return [
        {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": question}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]


def check_line_keys(c, where, obj, documented, what, needed):
    """Keys of `obj` exactly as documented (names, order and JSON types); whether the `needed` keys (name:
    type) are there with their types, so that the content checks can go on."""
    if not c.check(isinstance(obj, dict), f"{where}: {what} is not a JSON object"):
        return False
    file = where.split(":")[0]
    keys = list(obj)
    names = [k for k, _ in documented]
    if set(keys) != set(names):
        missing = [k for k in names if k not in obj]
        extra = [k for k in keys if k not in names]
        c.fail(f"{where}: {what} keys differ from the README: missing {missing}, undocumented {extra}", (file, what, "keys"))
    elif keys != names:
        c.fail(f"{where}: {what} keys in order {keys}, the README documents {names}", (file, what, "order"))
    for k, t in documented:
        if k in obj:
            c.check(
                json_type_ok(obj[k], t),
                f"{where}: {what} key `{k}` = {obj[k]!r:.80} is not of type {t}",
                (file, what, "type", k),
            )
    return all(k in obj and json_type_ok(obj[k], t) for k, t in needed.items())


def check_jsonl(c, path, kind, documented, parquet_rows):
    """Checks llava.jsonl (kind "llava") or openai.jsonl (kind "openai"); returns [(line id, qa list)]."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{os.path.basename(path)}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                c.fail(f"{where}: not JSON: {e}")
                continue
            turns = "conversations" if kind == "llava" else "messages"
            needed = {"id": "string", "image": "string|null", turns: "array", "qa": "array"}
            if not check_line_keys(c, where, obj, documented[kind], "line", needed):
                c.fail(f"{where}: cannot check the line's content without {needed}", (kind, "skipped lines"))
                continue
            qa = obj["qa"]
            c.check(len(qa) > 0, f"{where}: empty `qa`")
            good = True
            for i, r in enumerate(qa):
                good &= check_line_keys(c, f"{where} qa[{i}]", r, documented["qa"], "qa record", QA_NEEDED)
            if not good:
                c.fail(f"{where}: cannot check the qa records without {QA_NEEDED}", (kind, "skipped qa"))
                out.append((obj["id"], [r for r in qa if isinstance(r, dict) and isinstance(r.get("id"), str)]))
                continue
            for i, r in enumerate(qa):
                w = f"{where} qa[{i}] ({r['id']})"
                c.check(r["frame"] == obj["id"], f"{w}: frame {r['frame']!r} is not the line's id {obj['id']!r}")
                c.check(r["id"].startswith(r["frame"] + "#"), f"{w}: id is not `frame#k`")
                c.check(r["image"] == obj["image"], f"{w}: image {r['image']!r} is not the line's {obj['image']!r}")
                c.check(r["category"] in CATEGORIES, f"{w}: category {r['category']!r} not in {sorted(CATEGORIES)}", (kind, "category"))
                row = parquet_rows.get(r["id"])
                if row is None:
                    continue  # reported by the id-set comparison
                for k, v in r.items():
                    pv = row["image"]["path"] if k == "image" and row["image"] is not None else row.get(k)
                    if isinstance(v, list) and isinstance(pv, list):
                        ok = len(v) == len(pv) and all(same(a, b) for a, b in zip(v, pv))
                    else:
                        ok = same(v, pv)
                    c.check(ok, f"{w}: `{k}` is {v!r:.80} in the JSON Lines but {pv!r:.80} in qa.parquet", (kind, "field", k))
            if kind == "llava":
                check_conversations(c, where, obj["conversations"], qa)
            else:
                check_messages(c, where, obj["messages"], qa)
            out.append((obj["id"], qa))
    return out


def check_conversations(c, where, turns, qa):
    if not c.check(isinstance(turns, list), f"{where}: `conversations` is not an array"):
        return
    if not c.check(len(turns) == 2 * len(qa), f"{where}: {len(turns)} turns for {len(qa)} qa records"):
        return
    for i, t in enumerate(turns):
        want = "human" if i % 2 == 0 else "gpt"
        if not c.check(
            isinstance(t, dict) and set(t) == {"from", "value"} and t["from"] == want and isinstance(t["value"], str),
            f"{where}: turn {i} is {t!r:.120}, expected {{\"from\": \"{want}\", \"value\": text}}",
        ):
            return
    first = turns[0]["value"]
    if c.check(first.startswith("<image>\n"), f"{where}: the first human value does not start with '<image>\\n'"):
        turns = [dict(turns[0], value=first[len("<image>\n") :])] + turns[1:]
    for i, r in enumerate(qa):
        c.check(turns[2 * i]["value"] == r["question"], f"{where}: turn {2 * i} is not qa[{i}].question")
        c.check(turns[2 * i + 1]["value"] == r["answer"], f"{where}: turn {2 * i + 1} is not qa[{i}].answer")
    c.check(
        all("<image>" not in t["value"] for t in turns[1:]) and "<image>" not in turns[0]["value"],
        f"{where}: `<image>` appears more than once",
    )


def check_messages(c, where, messages, qa):
    if not c.check(isinstance(messages, list), f"{where}: `messages` is not an array"):
        return
    if not c.check(len(messages) == 2 * len(qa), f"{where}: {len(messages)} messages for {len(qa)} qa records"):
        return
    for i, m in enumerate(messages):
        role = "user" if i % 2 == 0 else "assistant"
        ok = (
            isinstance(m, dict)
            and set(m) == {"role", "content"}
            and m["role"] == role
            and isinstance(m["content"], list)
            and all(isinstance(x, dict) for x in m["content"])
        )
        if not c.check(ok, f"{where}: message {i} is {m!r:.120}, expected role {role!r} with a content array"):
            return
        content = m["content"]
        if i == 0:
            if not c.check(
                content[:1] == [{"type": "image"}], f"{where}: the first user content does not start with {{\"type\": \"image\"}}"
            ):
                return
            content = content[1:]
        r = qa[i // 2]
        text = r["question"] if role == "user" else r["answer"]
        c.check(
            content == [{"type": "text", "text": text}],
            f"{where}: message {i} content {content!r:.120} is not [{{type: text, text: qa[{i // 2}].{'question' if role == 'user' else 'answer'}}}]",
        )


def check_with_datasets(c, parquet_path, parquet_rows):
    try:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        import datasets
    except ImportError:
        print("datasets not installed: skipped the datasets load")
        return
    datasets.disable_progress_bars()
    cache = tempfile.mkdtemp(prefix="check_dataset_hf_")
    try:
        try:
            ds = datasets.load_dataset("parquet", data_files=parquet_path, cache_dir=cache)["train"]
        except Exception as e:  # any failure to load is a finding
            c.fail(f"datasets {datasets.__version__}: load_dataset('parquet') failed: {type(e).__name__}: {e}")
            return
        image = ds.features.get("image")
        c.check(
            isinstance(image, datasets.Image),
            f"datasets {datasets.__version__}: `image` is {image!r}, not an Image feature (check the `huggingface` schema metadata)",
        )
        c.check(ds.num_rows == len(parquet_rows), f"datasets: {ds.num_rows} rows, pyarrow {len(parquet_rows)}")
        if isinstance(image, datasets.Image):
            ds = ds.cast_column("image", datasets.Image(decode=False))  # images are paths; do not open them
        bad = 0
        for r in ds:
            row = parquet_rows.get(r["id"])
            if row is None or r["messages"] != row["messages"] or r["image"] != row["image"]:
                bad += 1
                if bad <= 3:
                    c.fail(f"datasets: row {r['id']!r} does not roundtrip `messages`/`image`: {r['messages']!r:.160}")
        if bad == 0:
            print(f"datasets {datasets.__version__}: loaded {ds.num_rows} rows, `image` is an Image feature, messages roundtrip")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    directory, readme_path = argv[1], argv[2]
    c = Checker()
    try:
        with open(readme_path, encoding="utf-8") as f:
            readme = f.read()
        parquet_doc = read_table(readme, "parquet-schema", ["column", "type", "meaning"])
        jsonl_doc = read_table(readme, "jsonl-schema", ["file", "key", "type", "meaning"])
        with open(os.path.join(directory, "dataset.json"), encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, ValueError) as e:
        print(f"FAIL: {e}")
        return 1

    documented = {"llava": [], "openai": [], "qa": []}
    for file, key, t, _ in jsonl_doc:
        if file not in documented:
            c.fail(f"README jsonl table: file {file!r} is not llava, openai or qa")
            continue
        if not all(p in JSON_TYPES for p in t.split("|")[:1]) or not all(p == "null" for p in t.split("|")[1:]):
            c.fail(f"README jsonl table: type {t!r} of {file}.{key} is not a JSON type name (or `T|null`)")
        documented[file].append((key, t))
    for file, keys in documented.items():
        c.check(keys, f"README jsonl table: no rows for {file}")
        c.check(len({k for k, _ in keys}) == len(keys), f"README jsonl table: {file} lists a key twice")

    # Parquet schema against the README.
    parquet_path = os.path.join(directory, "qa.parquet")
    schema = pq.read_schema(parquet_path)
    actual = [(f.name, str(f.type)) for f in schema]
    wanted = [(name, t) for name, t, _ in parquet_doc]
    if actual != wanted:
        names_a, names_w = [n for n, _ in actual], [n for n, _ in wanted]
        if names_a != names_w:
            c.fail(f"qa.parquet columns {names_a}\n  differ from the README's {names_w}")
        for (na, ta), (nw, tw) in zip(actual, wanted):
            if na == nw and ta != tw:
                c.fail(f"qa.parquet column `{na}` has type `{ta}`, the README says `{tw}`")

    # Parquet rows.
    rows = pq.read_table(parquet_path).to_pylist()
    parquet_rows = {}
    per_type = collections.Counter()
    per_category = collections.Counter()
    yes = no = 0
    for i, r in enumerate(rows):
        rid = r.get("id")
        w = f"qa.parquet row {i} ({rid})"
        if not c.check(rid not in parquet_rows, f"{w}: duplicate id"):
            continue
        parquet_rows[rid] = r
        if not all(k in r for k in ("question", "answer", "messages", "question_type", "category", "answer_bool")):
            continue  # the schema comparison reported the missing columns
        c.check(
            r["messages"] == expected_messages(r["question"], r["answer"]),
            f"{w}: messages {r['messages']!r:.160} are not [user: image + question, assistant: answer]",
            ("parquet", "messages"),
        )
        qt = r["question_type"]
        per_type[qt] += 1
        per_category[r["category"]] += 1
        c.check(r["category"] in CATEGORIES, f"{w}: category {r['category']!r} not in {sorted(CATEGORIES)}", ("parquet", "category"))
        if is_yes_no(qt):
            c.check(r["answer_bool"] is not None, f"{w}: yes/no question ({qt}) with a null answer_bool", ("parquet", "null bool", qt))
        else:
            c.check(r["answer_bool"] is None, f"{w}: {qt} is not a yes/no question but has answer_bool set", ("parquet", "bool", qt))
        yes += r["answer_bool"] is True
        no += r["answer_bool"] is False

    # Counts against dataset.json.
    c.check(len(rows) == summary.get("qa"), f"qa.parquet has {len(rows)} rows, dataset.json says qa = {summary.get('qa')}")
    want_types = {k: v for k, v in summary.get("per_type", {}).items() if v}
    c.check(
        dict(per_type) == want_types,
        f"per question type counts {dict(sorted(per_type.items()))}\n  differ from dataset.json's {want_types}",
    )
    unknown = set(per_type) - set(summary.get("per_type", {}))
    c.check(not unknown, f"question types not listed in dataset.json per_type: {sorted(unknown)}")
    want_cats = {k: v for k, v in summary.get("per_category", {}).items() if v}
    c.check(dict(per_category) == want_cats, f"per category counts {dict(per_category)} differ from dataset.json's {want_cats}")
    c.check(
        (yes, no) == (summary.get("answers_yes"), summary.get("answers_no")),
        f"{yes} yes / {no} no answers, dataset.json says {summary.get('answers_yes')} / {summary.get('answers_no')}",
    )

    # JSON Lines.
    llava = check_jsonl(c, os.path.join(directory, "llava.jsonl"), "llava", documented, parquet_rows)
    chat = check_jsonl(c, os.path.join(directory, "openai.jsonl"), "openai", documented, parquet_rows)
    c.check(
        [i for i, _ in llava] == [i for i, _ in chat],
        "llava.jsonl and openai.jsonl do not list the same images in the same order",
    )
    c.check(all(a == b for (_, a), (_, b) in zip(llava, chat)), "llava.jsonl and openai.jsonl differ in their `qa` records")
    c.check(
        len(llava) == summary.get("frames_with_qa"),
        f"llava.jsonl has {len(llava)} lines, dataset.json says frames_with_qa = {summary.get('frames_with_qa')}",
    )
    for name, lines in (("llava.jsonl", llava), ("openai.jsonl", chat)):
        ids = [r["id"] for _, qa in lines for r in qa]
        dup = [k for k, n in collections.Counter(ids).items() if n > 1]
        c.check(not dup, f"{name}: duplicate qa ids {dup[:5]}")
        if set(ids) != set(parquet_rows):
            only_j = sorted(set(ids) - set(parquet_rows))[:5]
            only_p = sorted(set(parquet_rows) - set(ids))[:5]
            c.fail(f"{name} qa ids and qa.parquet ids differ: only in {name} {only_j}, only in qa.parquet {only_p}")

    check_with_datasets(c, parquet_path, parquet_rows)

    if c.failures:
        messages = c.messages()
        for m in messages[:MAX_REPORTED]:
            print(f"FAIL: {m}")
        if len(messages) > MAX_REPORTED:
            print(f"... and {len(messages) - MAX_REPORTED} more failures")
        print(f"{sum(1 + n for _, n in c.failures)} failures")
        return 1
    print(f"checked {len(rows)} rows, {len(llava)} images: schema matches README")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
