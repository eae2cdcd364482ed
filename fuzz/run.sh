#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a while on one core, seeded from the repository.
#
#   fuzz/run.sh                 # every target, the times below (about 22 minutes)
#   fuzz/run.sh template 300    # one target, 300 seconds
#
# cargo-fuzz needs unstable flags (-Zsanitizer=address): on a stable toolchain
# RUSTC_BOOTSTRAP=1 allows them. Crashes land in fuzz/artifacts/TARGET/; reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -O TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
./seed.sh
cargo fuzz build -O
declare -A dict=([inventory]=toml [playbook]=toml [extra_vars]=toml [template]=template [pattern]=pattern)
declare -A time=([inventory]=150 [playbook]=150 [extra_vars]=120 [template]=150 [diagnostic]=90 [pattern]=60 [masking]=300 [names]=300)
targets=("${1:-inventory playbook extra_vars template diagnostic pattern masking names}")
if [ $# -ge 2 ]; then time[$1]=$2; fi
for t in ${targets[*]}; do
    args=(-max_total_time="${time[$t]}" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1)
    [ -n "${dict[$t]:-}" ] && args+=(-dict="dict/${dict[$t]}.dict")
    echo "== $t (${time[$t]} s)"
    cargo fuzz run -O "$t" -- "${args[@]}" < /dev/null
done
