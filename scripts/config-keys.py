#!/usr/bin/env python3
"""Prints the config-file keys of `skyshard czar` and `skyshard worker` as Markdown tables (key, default, meaning),
read from the binary's own --help: docs/operations.md carries its output, and tests/python/test_deploy.py checks
that the page names every key. Usage: scripts/config-keys.py [path/to/skyshard]"""

import re
import subprocess
import sys


def keys(skyshard, command):
    text = subprocess.run([skyshard, command, "--help"], capture_output=True, text=True, check=True).stdout
    flags = []  # [flag, help lines]
    for line in text.split("\n"):
        m = re.match(r"^\s{2,8}(?:-\w, )?--([a-z0-9-]+)", line)
        if m:
            flags.append([m.group(1), []])
        elif flags and line.startswith(" " * 10):
            flags[-1][1].append(line.strip())
    out = []
    for flag, lines in flags:
        help_text = " ".join(lines)
        if flag in ("help", "config"):
            continue
        default = re.search(r"\[default: ([^\]]*)\]", help_text)
        env = re.search(r"\[env: ([^\]]*)\]", help_text)
        meaning = re.sub(r"\s*\[(default|env|possible values): [^\]]*\]", "", help_text).strip()
        if env:
            meaning += f" (also the environment variable `{env.group(1)}`)"
        out.append((flag.replace("-", "_"), default.group(1) if default else "", meaning.replace("|", "\\|")))
    return out


def main():
    skyshard = sys.argv[1] if len(sys.argv) > 1 else "skyshard"
    for command in ("czar", "worker"):
        print(f"#### `{command}.toml`\n")
        print("| key | default | meaning |")
        print("|---|---|---|")
        for key, default, meaning in keys(skyshard, command):
            print(f"| `{key}` | {f'`{default}`' if default else ''} | {meaning} |")
        print()


if __name__ == "__main__":
    main()
