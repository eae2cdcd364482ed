#!/usr/bin/env bash
# Seeds fuzz/corpus/TARGET/ from the repository's own inputs. The corpus directories are
# not committed (see .gitignore); libFuzzer adds what it finds to them.
set -euo pipefail
cd "$(dirname "$0")"
root=..
mkdir -p corpus/{inventory,playbook,extra_vars,template,diagnostic,pattern,masking,names}
cp "$root"/tests/corpus/inventory/*.toml "$root"/inventories/*.toml corpus/inventory/
cp "$root"/tests/corpus/playbook/*.toml "$root"/playbooks/*.toml corpus/playbook/
# Every TOML input is also text for the diagnostic target.
for f in "$root"/tests/corpus/*/*.toml; do
    cp "$f" "corpus/diagnostic/$(basename "$(dirname "$f")")-$(basename "$f")"
done
# Template files, and each quoted string of the shipped playbooks (commands, paths, `when`s)
# with a selector byte in front: 0 shell, 1 plain, 2 expression.
i=0
for f in "$root"/templates/*; do
    for sel in 0 1; do printf "\\x$sel" > "corpus/template/file-$sel-$i"; cat "$f" >> "corpus/template/file-$sel-$i"; done
    i=$((i + 1))
done
grep -ho '"[^"]*{[{%][^"]*"' "$root"/playbooks/*.toml "$root"/tests/corpus/playbook/*.toml |
    sed 's/^"//; s/"$//' | sort -u | while IFS= read -r line; do
        for sel in 0 1 2; do printf "\\x$sel%s" "$line" > "corpus/template/field-$sel-$i"; done
        i=$((i + 1))
    done
printf '\x02%s' 'result.rc == 0 and "2.7" in result.stdout' > corpus/template/expr-when
printf '\x00%s' 'docker run {{ hostile }} {{ port | default(8080) }} {{ hostile | raw }}' > corpus/template/cmd-hostile
printf '\x01%s' '{% for g in group_names %}{{ loop.index }}={{ g | upper }}{% endfor %}' > corpus/template/loop
# -e arguments, one per line.
printf 'n=3\nanswer=NO\nversion=2.7.1\nlist=[1, 2]\ns="quoted"\n' > corpus/extra_vars/types
printf 'pw={ env = "HOME" }\nt={ a = { b = [1, { c = 2 }] } }\n' > corpus/extra_vars/tables
printf '1x=3\n=3\nnovalue\na.b=1\nd=1979-05-27\n' > corpus/extra_vars/bad
# Host patterns.
for p in 'web1' 'web,!web2' 'site:&db:!db1' '*1' 'db-[0-9]' '!web' 'web,&' 'wbe1' '{a,b}'; do
    printf '%s' "$p" > "corpus/pattern/$(printf '%s' "$p" | od -An -tx1 | tr -d ' \n')"
done
# Inputs that once crashed a target (fixed since): kept so every run tries them again.
for d in regressions/*/; do
    cp "$d"* "corpus/$(basename "$d")/"
done
