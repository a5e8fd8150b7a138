#!/usr/bin/env bash
# Benchmark (not a test): letterpress send vs Postfix's smtp-source, both
# sending N (default 10,000) messages of the same size to one smtp-sink on
# loopback, at concurrency 1, 4 and 16. letterpress renders every letter of
# the example campaign (10,000 rows made from recipients.example.csv) and
# journals each one; smtp-source sends a fixed payload. Prints messages/s,
# the ratio, and letterpress's peak memory (max RSS). Then the same send
# signed with DKIM (RSA-2048 and Ed25519 keys made here with openssl) at
# concurrency DKIM_LEVEL (default 4), as a ratio of letterpress's own
# unsigned rate at that level, with `openssl speed rsa2048` for scale.
#
#   bench/send.sh            # N=10000, concurrency 1 4 16, DKIM at 4
#   N=2000 LEVELS="1 4" DKIM_LEVEL=4 bench/send.sh
#
# Needs: a Rust toolchain, Postfix (smtp-sink, smtp-source: .ci/setup),
# /usr/bin/time (Debian package `time`), python3.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000}
LEVELS=${LEVELS:-"1 4 16"}
target=${CARGO_TARGET_DIR:-target}
for tool in /usr/sbin/smtp-sink /usr/sbin/smtp-source /usr/bin/time /usr/bin/openssl; do
  [ -x "$tool" ] || { echo "bench: $tool is missing; run .ci/setup (and apt-get install time)" >&2; exit 1; }
done

cargo build --release -q
bin=$target/release/letterpress

work=$(mktemp -d)
sinkpid=
cleanup() { [ -n "$sinkpid" ] && kill "$sinkpid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# N contacts, the example rows over and over with unique addresses.
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

# The average letter size, for smtp-source's payload: smtp-source adds
# about 150 bytes of headers of its own, so its payload is that much less.
head -101 "$work/list.csv" > "$work/sample.csv"
"$bin" render templates/weremember.mjml "$work/sample.csv" --out "$work/sample" --format eml --quiet
total=$(cat "$work/sample"/*.eml | wc -c)
total=$(( total / 100 ))
size=$(( total - 150 ))
rm -rf "$work/sample" "$work/sample.csv"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
/usr/sbin/smtp-sink -u nobody "127.0.0.1:$port" 1024 &
sinkpid=$!
sleep 0.3

now() { date +%s.%N; }
# One letterpress send of the whole list at concurrency $1 (more options
# after it), with a fresh journal: sets lp_rate and rss.
lp_send() {
  local c=$1; shift
  rm -f "$work/j.sqlite"*
  local t0 t1
  t0=$(now)
  /usr/bin/time -v -o "$work/time.txt" "$bin" send templates/weremember.mjml "$work/list.csv" \
      --smtp "smtp://127.0.0.1:$port" --concurrency "$c" --journal "$work/j.sqlite" --quiet "$@"
  t1=$(now)
  lp_rate=$(python3 -c "print(f'{$N/($t1-$t0):.0f}')")
  rss=$(awk -F': ' '/Maximum resident/{printf "%.1f", $2/1024}' "$work/time.txt")
}
printf 'messages: %d, letter: %d bytes on average (smtp-source payload %d), cores: %d\n' "$N" "$total" "$size" "$(nproc)"
printf '%-12s %16s %16s %8s %14s\n' concurrency smtp-source/s letterpress/s ratio "peak RSS MB"
for c in $LEVELS; do
  t0=$(now)
  /usr/sbin/smtp-source -d -s "$c" -l "$size" -m "$N" -f bench@example.org -t sink@example.org "127.0.0.1:$port"
  t1=$(now)
  src_rate=$(python3 -c "print(f'{$N/($t1-$t0):.0f}')")

  lp_send "$c"
  ratio=$(python3 -c "print(f'{$lp_rate/$src_rate*100:.0f}%')")
  printf '%-12s %16s %16s %8s %14s\n' "$c" "$src_rate" "$lp_rate" "$ratio" "$rss"
done

# DKIM: the same send, signed, against letterpress's own unsigned rate.
c=${DKIM_LEVEL:-4}
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$work/ed.pem" 2>/dev/null
lp_send "$c"
unsigned=$lp_rate
printf '\nDKIM at concurrency %d (unsigned: %s/s)\n' "$c" "$unsigned"
printf '%-12s %16s %8s %14s\n' key letterpress/s ratio "peak RSS MB"
for key in rsa ed; do
  lp_send "$c" --dkim-key "$work/$key.pem" --dkim-selector bench --dkim-domain example.org
  ratio=$(python3 -c "print(f'{$lp_rate/$unsigned:.2f}x')")
  name=$([ "$key" = rsa ] && echo RSA-2048 || echo Ed25519)
  printf '%-12s %16s %8s %14s\n' "$name" "$lp_rate" "$ratio" "$rss"
done
printf 'openssl speed -seconds 3 rsa2048 (one core): '
openssl speed -seconds 3 rsa2048 2>/dev/null | awk '/^rsa 2048/{print $6 " signs/s"}'

