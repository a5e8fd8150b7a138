#!/usr/bin/env bash
# Benchmark (not a test): one campaign of N (default 10,000) letters to
# one smtp-sink on loopback, sent two ways in the same run:
#   - one `letterpress send` against an SQLite journal, --concurrency 4;
#   - three `letterpress send` workers against one PostgreSQL journal,
#     4 SMTP connections in all (--concurrency 2, 1 and 1).
# Prints letters/s of each, the ratio (goal: >= 0.9x SQLite), and the
# PostgreSQL journal's database round trips per letter (every query of
# every worker, the lease heartbeats included). The PostgreSQL cluster is
# a throwaway one started here (initdb in a temporary folder, default
# durability: fsync and synchronous_commit on), removed at the end.
#
#   bench/postgres.sh            # N=10000, ROUNDS=3
#   N=3000 ROUNDS=1 bench/postgres.sh
#   PG_OPTS="-c synchronous_commit=off" bench/postgres.sh   # server options
#
# Needs: a Rust toolchain, Postfix's smtp-sink and PostgreSQL
# (/usr/lib/postgresql/*/bin: .ci/setup), python3.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000}
ROUNDS=${ROUNDS:-3}
target=${CARGO_TARGET_DIR:-target}
[ -x /usr/sbin/smtp-sink ] || { echo "bench: smtp-sink is missing; run .ci/setup" >&2; exit 1; }
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/initdb" ] || { echo "bench: PostgreSQL is missing; run .ci/setup" >&2; exit 1; }

cargo build --release -q
bin=$(pwd)/$target/release/letterpress

work=$(mktemp -d)
chmod 755 "$work"
sinkpid=
as_pg=()
[ "$(id -u)" = 0 ] && as_pg=(runuser -u nobody --)
cleanup() {
  [ -n "$sinkpid" ] && kill "$sinkpid" 2>/dev/null
  [ -d "$work/pg" ] && (cd "$work" && "${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" stop -m fast >/dev/null 2>&1)
  rm -rf "$work"
}
trap cleanup EXIT

python3 - "$N" recipients.example.csv "$work/list.csv" <<'PY'
import csv, sys
n, src, dst = int(sys.argv[1]), sys.argv[2], sys.argv[3]
rows = list(csv.reader(open(src, encoding="utf-8")))
head, body = rows[0], rows[1:]
e = head.index("email")
with open(dst, "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(head)
    for i in range(n):
        r = list(body[i % len(body)])
        r[e] = f"bench{i}@example.org"
        w.writerow(r)
PY

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
/usr/sbin/smtp-sink -u nobody "127.0.0.1:$port" 1024 &
sinkpid=$!

# The cluster: password authentication over TCP, as a real one.
mkdir -p "$work/pg"
echo bench-secret > "$work/pg/pw"
[ "$(id -u)" = 0 ] && chown -R nobody "$work/pg"
pgport=$(free_port)
(cd "$work/pg" && "${as_pg[@]}" "$pgbin/initdb" -D "$work/pg/data" -U postgres -E UTF8 \
   --auth-local=trust --auth-host=scram-sha-256 --pwfile "$work/pg/pw" >/dev/null)
(cd "$work/pg" && "${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" \
   -o "-h 127.0.0.1 -p $pgport -k $work/pg ${PG_OPTS:-}" -w start >/dev/null)
export PGPASSWORD=bench-secret
psql() { (cd "$work/pg" && "${as_pg[@]}" "$pgbin/psql" -h "$work/pg" -p "$pgport" -U postgres -Atq "$@"); }
sleep 0.3

now() { date +%s.%N; }
send() { "$bin" send templates/weremember.mjml "$work/list.csv" --smtp "smtp://127.0.0.1:$port" --quiet --json "$@"; }

printf 'letters: %d, cores: %d, PostgreSQL %s\n' "$N" "$(nproc)" "$(basename "$(dirname "$pgbin")")"
printf '%-6s %12s %14s %8s %16s\n' round sqlite/s postgres/s ratio "trips/letter"
ratios=()
for r in $(seq "$ROUNDS"); do
  rm -f "$work"/j.sqlite*
  t0=$(now)
  send --concurrency 4 --journal "$work/j.sqlite" > "$work/sqlite.json"
  t1=$(now)
  sqlite_rate=$(python3 -c "print(f'{$N/($t1-$t0):.0f}')")

  psql -d postgres -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench"
  url="postgres://postgres@127.0.0.1:$pgport/bench?sslmode=disable"
  t0=$(now)
  send --concurrency 2 --journal "$url" > "$work/pg1.json" &
  p1=$!
  send --concurrency 1 --journal "$url" > "$work/pg2.json" &
  p2=$!
  send --concurrency 1 --journal "$url" > "$work/pg3.json" &
  p3=$!
  wait $p1 $p2 $p3
  t1=$(now)
  pg_rate=$(python3 -c "print(f'{$N/($t1-$t0):.0f}')")
  read -r accepted trips < <(python3 - "$work" <<'PY'
import json, sys
a = t = 0
for i in (1, 2, 3):
    s = json.load(open(f"{sys.argv[1]}/pg{i}.json"))
    a += s["accepted"]; t += s["journal_round_trips"]
print(a, t)
PY
)
  [ "$accepted" = "$N" ] || { echo "bench: the workers accepted $accepted of $N" >&2; exit 1; }
  ratio=$(python3 -c "print(f'{$pg_rate/$sqlite_rate:.2f}x')")
  per=$(python3 -c "print(f'{$trips/$N:.2f}')")
  printf '%-6s %12s %14s %8s %16s\n' "$r" "$sqlite_rate" "$pg_rate" "$ratio" "$per"
  ratios+=("${ratio%x}")
done
# The rounds vary by +-0.05 on a shared 2-core machine: judge by the median.
python3 -c "import statistics, sys; print(f'median ratio: {statistics.median(map(float, sys.argv[1:])):.2f}x')" "${ratios[@]}"
