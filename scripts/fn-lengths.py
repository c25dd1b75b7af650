"""Lists the longest Rust functions: `python3 scripts/fn-lengths.py [DIR…] [--top N] [--over N]`.

A function's length is its lines from `fn` to its closing brace, tests
(`#[cfg(test)] mod tests`) left out. Strings, chars and comments are skipped
when braces are matched. With `--over N` it exits 1 when a function outside
the listed binary parsers is longer than N lines (binary parsers: 150).
"""

import pathlib
import re
import sys

# Binary parsers: their limit is 150 lines, not 70.
PARSERS = ("verify/formats/torch/pickle.rs", "verify/formats/torch/file.rs", "verify/formats/gguf.rs", "verify/formats/pt2.rs", "oci/artifact.rs")


def strip(text):
    """`text` with strings, chars and comments blanked (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = '"' + hashes
            j = text.find(end, i + 2 + len(hashes))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1]))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:i + 12])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(path):
    text = strip(path.read_text())
    cut = re.search(r"#\[cfg\(test\)\]\s*mod\s+tests", text)
    if cut:
        text = text[: cut.start()]
    for m in re.finditer(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)", text):
        start = m.start()
        body = text.find("{", m.end())
        semi = text.find(";", m.end())
        if body < 0 or (0 <= semi < body):
            continue  # a declaration without a body
        depth, j = 0, body
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        first = text.count("\n", 0, start) + 1
        last = text.count("\n", 0, j) + 1
        yield m.group(1), first, last - first + 1


def main(argv):
    top, over, dirs = 15, None, []
    args = iter(argv)
    for a in args:
        if a == "--top":
            top = int(next(args))
        elif a == "--over":
            over = int(next(args))
        else:
            dirs.append(a)
    rows = []
    for d in dirs or ["src"]:
        for path in sorted(pathlib.Path(d).rglob("*.rs")):
            for name, line, length in functions(path):
                rows.append((length, f"{path}:{line}", name))
    rows.sort(reverse=True)
    for length, where, name in rows[:top]:
        print(f"{length:5}  {where}  {name}")
    if over is not None:
        bad = [r for r in rows if r[0] > (150 if r[1].split(":")[0].endswith(PARSERS) else over)]
        print(f"{len(bad)} function(s) over the limit ({over} lines; binary parsers 150)")
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
