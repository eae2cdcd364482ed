#!/usr/bin/env bash
# capstan adapter for ../shared/bench (run as: ../shared/bench/run.sh bench/capstan.sh N [REPS]).
# W1 as a capstan playbook: T1 a fact (`uname -r`, changed_when = false), T2-T7 and T9-T10
# commands guarded by `creates`, T8 a rendered template. Strict host key checking against
# $BENCH_KNOWN_HOSTS, the bench key, forks = $BENCH_FORKS.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${CAPSTAN_BIN:-$ROOT/target/release/capstan}

case ${1:-} in
version)
    "$BIN" --version
    ;;
prepare)
    # One-time installation: the release binary.
    (cd "$ROOT" && cargo build --release --quiet)
    mkdir -p "$BENCH_WORK/templates"
    cp "$BENCH_WORKLOAD/app.conf.j2" "$BENCH_WORK/templates/app.conf.j2"
    {
        printf '[defaults]\nuser = "root"\nidentity_file = "%s"\nknown_hosts = "%s"\nhost_key_checking = "strict"\n\n' \
            "$BENCH_KEY" "$BENCH_KNOWN_HOSTS"
        while IFS=$'\t' read -r name addr port dir; do
            [[ -n $name ]] || continue
            printf '[hosts.%s]\naddress = "%s"\nport = %s\nvars = { host_dir = "%s", node_name = "%s", app_port = %d }\n\n' \
                "$name" "$addr" "$port" "$dir" "$name" $((8000 + ${name#host}))
        done < "$BENCH_INVENTORY"
    } > "$BENCH_WORK/inventory.toml"
    {
        printf 'name = "W1 facts+commands"\n\n[[plays]]\nname = "W1"\nhosts = "all"\n\n'
        printf '[[plays.tasks]]\nname = "T1 fact"\ncommand = "uname -r"\nchanged_when = "false"\n\n'
        for k in 1 2 3 4 5 6; do
            printf '[[plays.tasks]]\nname = "T%d marker-%d"\ncommand = "echo \\"$NODE_NAME\\" > \\"$HOST_DIR/marker-%d\\""\ncreates = "{{ host_dir }}/marker-%d"\n\n' \
                $((k + 1)) "$k" "$k" "$k"
        done
        printf '[[plays.tasks]]\nname = "T8 template"\ntemplate = { src = "app.conf.j2", dest = "{{ host_dir }}/app.conf" }\n\n'
        for k in 1 2; do
            printf '[[plays.tasks]]\nname = "T%d created-%d"\ncommand = "printf '"'"'built by %%s\\\\n'"'"' \\"$NODE_NAME\\" > \\"$HOST_DIR/created-%d\\""\ncreates = "{{ host_dir }}/created-%d"\n\n' \
                $((k + 8)) "$k" "$k" "$k"
        done
    } > "$BENCH_WORK/w1.toml"
    ;;
run)
    exec "$BIN" run "$BENCH_WORK/w1.toml" -i "$BENCH_WORK/inventory.toml" \
        --templates "$BENCH_WORK/templates" --forks "$BENCH_FORKS"
    ;;
changed)
    # The recap prints one `changed=N` per host.
    grep -o 'changed=[0-9]*' "$2" | awk -F= '{ s += $2 } END { print s + 0 }'
    ;;
*)
    echo "usage: $0 version|prepare|run|changed LOG" >&2
    exit 2
    ;;
esac
