#!/usr/bin/env bash
# Bad-input corpus: runs qsched on generated bad inputs and checks how it refuses them.
#
#   scripts/bad_input_corpus.sh [--list] [QSCHED_BINARY [NAME_FILTER]]
#
#   QSCHED_BINARY   default: build/qsched of this checkout
#   NAME_FILTER     an extended regex; only the cases whose name matches run (e.g. '^ckpt_')
#   --list          print the case names (one per line) and exit
#   CORPUS_TIMEOUT  env: seconds per case (default 60; a case killed after it is a "hang")
#   CORPUS_KEEP=1   env: keep the work directory (printed) instead of removing it
#   CORPUS_JOBS     env: cases run in parallel (default 2; fixtures are built first)
#
# Everything is generated in a mktemp -d work directory (removed at exit): configs, IDX data,
# one tiny trained INQ run (synthetic data, MLP 64-8-4, 3 epochs), its export, a tiny
# meta-trained controller, a sweep and a compare; corrupt checkpoints, controllers, exports and
# meta states are derived from them by flipping bytes, truncating, editing JSON.
#
# Each case runs ONE qsched command under `timeout -s KILL` and checks:
#   - the exit code is the expected one (2 bad input; 4 I/O failure; 0 for the few controls);
#   - on a refusal, stderr holds exactly ONE line and it names the input (file, key or flag);
#   - no crash (exit >= 128 other than 130, or a sanitizer report), no hang (the timeout);
#   - nothing was accepted silently (exit 0 where an error was expected);
#   - where stated, files that must survive (an unrelated file, the run's checkpoint) did.
# Failure categories: crash hang sanitizer exit1 accepted wrong-code multiline unnamed damaged
# fixture. Exit status: 0 when every case passed, 1 otherwise.
set -u

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

LIST=0
ARGS=()
for a in "$@"; do
  case "$a" in
    --list) LIST=1 ;;
    -h | --help) usage; exit 0 ;;
    *) ARGS+=("$a") ;;
  esac
done
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BIN=${ARGS[0]:-$REPO/build/qsched}
FILTER=${ARGS[1]:-}
T=${CORPUS_TIMEOUT:-60}
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

# ----------------------------------------------------------------------------------------------
# Case registry: `def NAME` registers the case whose body is the function c_NAME.
CASES=()
def() { CASES+=("$1"); }

# ----------------------------------------------------------------------------------------------
# Running one qsched command and judging it.

RESULT=""    # PASS | FAIL
CATEGORY=""  # failure category
DETAIL=""    # one line of explanation
CMDLINE=""
ERRFIRST=""
ULIMIT_F=""  # when set, the command runs under `ulimit -f $ULIMIT_F` (512-byte blocks)
CT=""        # per-case timeout override

quote_cmd() {
  local s="qsched" a
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then s+=" $a"; else s+=" $(printf '%q' "$a")"; fi
  done
  printf '%s' "${s//$W/\$W}"
}

fail() { RESULT=FAIL; CATEGORY=$1; DETAIL=$2; }

# expect CODES PATTERN ARGS...: runs `qsched ARGS...`; CODES is a space-separated list of
# accepted exit codes; PATTERN (extended regex, case-insensitive) must occur in the single
# stderr line of a refusal ("" = do not look at stderr).
expect() {
  local codes=$1 pat=$2
  shift 2
  local to=${CT:-$T}
  CMDLINE=$(quote_cmd "$@")
  local out=$C/.qsched.out err=$C/.qsched.err rc t0 t1
  t0=$(date +%s)
  if [[ -n $ULIMIT_F ]]; then
    # stdout to /dev/null and stderr through a pipe: neither is limited by RLIMIT_FSIZE
    (ulimit -f "$ULIMIT_F"; exec timeout -s KILL "$to" "$BIN" "$@" 2>&1 >/dev/null </dev/null) \
      2>/dev/null | cat >"$err"
    rc=${PIPESTATUS[0]}
    : >"$out"
  else
    timeout -s KILL "$to" "$BIN" "$@" >"$out" 2>"$err" </dev/null
    rc=$?
  fi
  t1=$(date +%s)
  RC=$rc
  # Lines that are not the error: an empty line, the BLAS warning of a misconfigured machine,
  # the one-line plan a sweep prints before it starts (also with --quiet).
  local lines
  lines=$(grep -a -v -e '^[[:space:]]*$' -e '^warning: libtorch is running on the reference BLAS' \
    -E -e '^sweep .*: [0-9]+ points x [0-9]+ seeds = ' \
    "$err" | head -c 20000)
  local n
  n=$(printf '%s' "$lines" | grep -a -c '' || true)
  ERRFIRST=$(printf '%s\n' "$lines" | head -n 3 | cut -c1-400)
  RESULT=PASS; CATEGORY=""; DETAIL=""
  if grep -a -q -e 'ERROR: AddressSanitizer' -e 'ERROR: LeakSanitizer' -e 'runtime error:' \
    -e 'SUMMARY: UndefinedBehaviorSanitizer' "$err"; then
    fail sanitizer "sanitizer report (exit $rc)"
    ERRFIRST=$(grep -a -m3 -e 'ERROR: AddressSanitizer' -e 'runtime error:' -e 'SUMMARY:' "$err")
  elif { [[ $rc == 137 || $rc == 124 ]] && ((t1 - t0 >= to - 1)); }; then
    fail hang "killed after the ${to}s timeout (expected exit $codes)"
  elif ((rc >= 128 && rc != 130)); then
    fail crash "exit $rc (signal $((rc - 128))), expected $codes"
  elif [[ " $codes " != *" $rc "* ]]; then
    if [[ $rc == 0 ]]; then
      fail accepted "exit 0, expected $codes"
    elif [[ $rc == 1 ]]; then
      fail exit1 "exit 1 (internal error), expected $codes"
    else
      fail wrong-code "exit $rc, expected $codes"
    fi
  elif [[ $rc != 0 && -n $pat ]]; then
    if ((n != 1)); then
      fail multiline "exit $rc as expected, but stderr has $n lines (one expected)"
    elif ! printf '%s' "$lines" | grep -a -q -i -E -e "$pat"; then
      fail unnamed "exit $rc as expected, but the error does not name /$pat/"
    fi
  fi
}

# After expect: more conditions. require COND-COMMAND... DESCRIPTION
require_file() {  # the file must still exist (and, with a second argument, equal that copy)
  [[ $RESULT == PASS ]] || return 0
  if [[ ! -e $1 ]]; then
    fail damaged "${1/#$W/\$W} no longer exists"
  elif [[ $# -ge 2 ]] && ! cmp -s "$1" "$2"; then
    fail damaged "${1/#$W/\$W} was changed"
  fi
}
require_absent() {
  [[ $RESULT == PASS ]] || return 0
  [[ ! -e $1 ]] || fail damaged "${1/#$W/\$W} was created"
}

# ----------------------------------------------------------------------------------------------
# Generators.

jpy() { "$PY" - "$@"; }  # python with arguments, script on stdin

# cfg FILE PYEXPR: writes the base synthetic config after `c` was modified by PYEXPR.
BASE_CFG='{
  "seed": 3, "threads": 1, "algorithm": "float",
  "data": {"format": "synthetic", "val_size": 64,
           "synthetic": {"n": 512, "test_n": 128, "height": 8, "width": 8, "num_classes": 4,
                         "noise": 0.8}},
  "network": {"type": "mlp", "hidden": [8]},
  "train": {"epochs": 1, "batch_size": 64,
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
            "lr_schedule": {"name": "cosine"}}
}'
INQ_SECTION='{"bits": 2, "codebook": "min-error", "pretrain_epochs": 1,
              "schedule": {"family": "steps", "portions": [0.5, 1.0], "epochs_per_step": 1}}'
ANA_SECTION='{"pretrain_epochs": 1,
              "schedule": {"family": "ana_window", "sigma0": 0.5, "layout": "sequential"}}'
cfg() {  # cfg OUT [PYTHON STATEMENTS on c]
  jpy "$1" "${2:-pass}" "$BASE_CFG" "$INQ_SECTION" "$ANA_SECTION" <<'EOF'
import json, sys
out, code, base, inq, ana = sys.argv[1:6]
c = json.loads(base)
INQ = json.loads(inq); ANA = json.loads(ana)
def as_inq():
    c["algorithm"] = "inq"; c["inq"] = json.loads(inq); c["train"]["epochs"] = 3
def as_ana():
    c["algorithm"] = "ana"; c["ana"] = json.loads(ana); c["train"]["epochs"] = 3
exec(code)
open(out, "w").write(json.dumps(c) if not isinstance(c, str) else c)
EOF
}

# idx_images PATH N H W [MAGIC] [ANNOUNCED_N]: an IDX3 image file (big-endian header).
idx_images() {
  jpy "$@" <<'EOF'
import struct, sys
path, n, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
magic = int(sys.argv[5], 0) if len(sys.argv) > 5 else 0x803
ann = int(sys.argv[6]) if len(sys.argv) > 6 else n
data = bytearray()
for i in range(n):
    k = i % 4
    data += bytes(((x * 37 + k * 61 + i) % 97) + (120 if (x % 4) == k else 0) for x in range(h * w))
open(path, "wb").write(struct.pack(">III", magic, ann, h) + struct.pack(">I", w) + bytes(data))
EOF
}
idx_labels() {  # idx_labels PATH N [MAX_LABEL] [ANNOUNCED_N]
  jpy "$@" <<'EOF'
import struct, sys
path, n = sys.argv[1], int(sys.argv[2])
top = int(sys.argv[3]) if len(sys.argv) > 3 else 3
ann = int(sys.argv[4]) if len(sys.argv) > 4 else n
lab = bytes((i % 4) if top <= 3 else (top if i == n // 2 else i % 4) for i in range(n))
open(path, "wb").write(struct.pack(">II", 0x801, ann) + lab)
EOF
}
# idx_dir DIR: a complete, valid small 8x8 IDX data set (train 200, test 64, 4 classes).
idx_dir() {
  mkdir -p "$1"
  idx_images "$1/train-images-idx3-ubyte" 200 8 8
  idx_labels "$1/train-labels-idx1-ubyte" 200
  idx_images "$1/t10k-images-idx3-ubyte" 64 8 8
  idx_labels "$1/t10k-labels-idx1-ubyte" 64
}

# flip FILE OFFSET [COUNT]: inverts COUNT bytes at OFFSET (negative: from the end).
flip() {
  jpy "$@" <<'EOF'
import sys
p, off = sys.argv[1], int(sys.argv[2])
cnt = int(sys.argv[3]) if len(sys.argv) > 3 else 1
b = bytearray(open(p, "rb").read())
if off < 0: off += len(b)
for i in range(off, min(off + cnt, len(b))): b[i] ^= 0xFF
open(p, "wb").write(bytes(b))
EOF
}
fsize() { stat -c %s "$1"; }
truncate_to() { truncate -s "$2" "$1"; }
jedit() {  # jedit FILE PYTHON-STATEMENTS-on-j
  jpy "$1" "$2" <<'EOF'
import json, sys
p, code = sys.argv[1], sys.argv[2]
j = json.load(open(p))
exec(code)
open(p, "w").write(j if isinstance(j, str) else json.dumps(j, indent=1))
EOF
}

# qsx OP IN OUT ARGS: edits an export file (inner/export/format.h); CRC and sizes recomputed
# unless the op is about them.
write_qsx_tool() {
  cat >"$W/qsx.py" <<'EOF'
import json, struct, sys, zlib
op, src, dst = sys.argv[1:4]
a = sys.argv[4:]
b = open(src, "rb").read()
magic = b[:8]
ver, hb, pb, crc, rc = struct.unpack("<IIQII", b[8:32])
hdr = b[32:32 + hb]
recs = b[32 + hb:]
def out(ver=ver, hdr=hdr, recs=recs, rc=rc, hb=None, pb=None, crc=None, magic=magic):
    payload = hdr + recs
    hb = len(hdr) if hb is None else hb
    pb = len(payload) if pb is None else pb
    crc = (zlib.crc32(payload) & 0xffffffff) if crc is None else crc
    open(dst, "wb").write(magic + struct.pack("<IIQII", ver, hb, pb, crc, rc) + payload)
if op == "header":          # python statements on h (the header JSON)
    h = json.loads(hdr); exec(a[0]); out(hdr=json.dumps(h).encode())
elif op == "rawheader":     # header replaced by this text
    out(hdr=a[0].encode())
elif op == "deepheader":    # header nested N levels deep
    n = int(a[0]); out(hdr=("[" * n + "]" * n).encode())
elif op == "pre":           # preamble field = value (CRC not recomputed)
    f = dict(ver=ver, hb=hb, pb=pb, crc=crc, rc=rc); f[a[0]] = int(a[1], 0)
    out(ver=f["ver"], hb=f["hb"], pb=f["pb"], crc=f["crc"], rc=f["rc"])
elif op == "rec0":          # first record: field = value, CRC recomputed
    r = bytearray(recs); nb = struct.unpack_from("<H", r, 0)[0]; o = 2 + nb
    field, val = a[0], int(a[1], 0)
    if field == "type": r[o] = val
    elif field == "bits": r[o + 1] = val
    elif field == "ndim": r[o + 2] = val
    elif field == "n1": struct.pack_into("<i", r, o + 4, val)
    elif field == "dim0": struct.pack_into("<I", r, o + 12, val)
    elif field == "namelen": struct.pack_into("<H", r, 0, val)
    elif field == "data_bytes":
        nd = r[o + 2]; struct.pack_into("<Q", r, o + 12 + 4 * nd, val)
    out(recs=bytes(r))
elif op == "dup0":          # the first record twice (record_count + 1)
    r = recs; nb = struct.unpack_from("<H", r, 0)[0]; o = 2 + nb
    nd = r[o + 2]; db = struct.unpack_from("<Q", r, o + 12 + 4 * nd)[0]
    size = o + 12 + 4 * nd + 8 + db
    out(recs=r[:size] + r, rc=rc + 1)
elif op == "codes":         # every byte of the first record's data = value (invalid codes)
    r = bytearray(recs); nb = struct.unpack_from("<H", r, 0)[0]; o = 2 + nb
    nd = r[o + 2]; db = struct.unpack_from("<Q", r, o + 12 + 4 * nd)[0]
    start = o + 12 + 4 * nd + 8
    for i in range(start, start + db): r[i] = int(a[0], 0)
    out(recs=bytes(r))
elif op == "append":        # trailing bytes after the payload
    open(dst, "wb").write(b + b"\0" * int(a[0]))
else:
    sys.exit("unknown op " + op)
EOF
}
qsx() { "$PY" "$W/qsx.py" "$@"; }

# ----------------------------------------------------------------------------------------------
# Fixtures (built once, on first use). A fixture that cannot be built fails its cases.

FX_FAILED=()
fixture() {  # fixture NAME: 0 when built (now or before)
  local name=$1
  [[ -e $W/fx/.ok_$name ]] && return 0
  [[ " ${FX_FAILED[*]:-} " == *" $name "* ]] && return 1
  mkdir -p "$W/fx"
  local log=$W/fx/$name.log
  if "fx_$name" >"$log" 2>&1; then
    touch "$W/fx/.ok_$name"
    return 0
  fi
  FX_FAILED+=("$name")
  echo "fixture $name FAILED; its log:" >&2
  tail -n 5 "$log" | sed 's/^/    /' >&2
  return 1
}
need() {  # need FIXTURE...: fails the case when one cannot be built
  local f
  for f in "$@"; do
    if ! fixture "$f"; then
      fail fixture "fixture $f could not be built"
      return 1
    fi
  done
}

fx_cfgs() {
  cfg "$W/fx/float.json"
  cfg "$W/fx/inq.json" 'as_inq()'
  cfg "$W/fx/ana.json" 'as_ana()'
  idx_dir "$W/fx/idx"
  cfg "$W/fx/idx.json" 'c["data"] = {"format": "idx", "root": "'"$W"'/fx/idx", "val_size": 40}'
}
fx_run() {  # a finished INQ run
  fixture cfgs || return 1
  "$BIN" train --config "$W/fx/inq.json" --out "$W/fx/run" --quiet
}
fx_floatrun() {
  fixture cfgs || return 1
  "$BIN" train --config "$W/fx/float.json" --out "$W/fx/floatrun" --quiet
}
fx_export() {
  fixture run || return 1
  write_qsx_tool
  "$BIN" export --run "$W/fx/run" --out "$W/fx/model.qsx"
}
fx_meta() {  # a tiny meta-trained INQ controller
  fixture cfgs || return 1
  jpy "$W/fx/meta.json" "$W/fx/inq.json" <<'EOF'
import json, sys
run = json.load(open(sys.argv[2]))
m = {"seed": 2, "threads": 1, "steps": 1, "validate_every": 0, "checkpoint_every": 1,
     "run": run,
     "tasks": {"networks": [{"type": "mlp", "hidden": [8]}], "seeds": 1},
     "validation": {"networks": [{"type": "mlp", "hidden": [6]}]},
     "controller": {"hidden": 4},
     "estimator": {"pairs": 1, "sigma": 0.1}}
json.dump(m, open(sys.argv[1], "w"))
EOF
  "$BIN" meta-train --config "$W/fx/meta.json" --out "$W/fx/meta" --quiet
}
fx_apply() {  # a finished apply run
  fixture meta || return 1
  "$BIN" apply --controller "$W/fx/meta" --config "$W/fx/inq.json" --out "$W/fx/applied" --quiet
}
fx_sweep() {
  fixture cfgs || return 1
  echo '{"family": "linear", "grid": {"layout": ["overlapped"]}}' >"$W/fx/grid.json"
  "$BIN" sweep --config "$W/fx/inq.json" --grid "$W/fx/grid.json" --seeds 1 --jobs 1 \
    --out "$W/fx/sweep" --quiet --no-report
}
fx_compare() {
  fixture cfgs || return 1
  jpy "$W/fx/compare.json" "$W/fx/inq.json" <<'EOF'
import json, sys
c = {"config": sys.argv[2],
     "targets": [{"name": "t8", "set": {"network": {"type": "mlp", "hidden": [8]}}}],
     "schedules": [{"name": "steps", "schedule": {"family": "steps", "portions": [0.5, 1.0],
                                                  "epochs_per_step": 1}},
                   {"name": "lin", "schedule": {"family": "linear"}}],
     "reference": "steps", "seeds": 2}
json.dump(c, open(sys.argv[1], "w"))
EOF
  "$BIN" compare --config "$W/fx/compare.json" --out "$W/fx/cmp" --jobs 1 --quiet
}

# Per-case scratch: $C is a fresh directory for the case.
copy_run() { cp -a "$W/fx/$1" "$C/$2"; }
foreign_dir() {  # foreign_dir DIR: a directory that is not qsched's, with a file to keep
  mkdir -p "$1"
  echo "not qsched's" >"$1/keep.txt"
}

# ==============================================================================================
# Cases. Conventions: $C = the case's scratch directory; O=$C/out an output directory.

# ---- configs: syntax and strict JSON ----------------------------------------------------------
cfg_case() {  # cfg_case PYSTMTS PATTERN [extra train flags]: train with a generated config
  local code=$1 pat=$2
  shift 2
  need cfgs || return
  cfg "$C/c.json" "$code"
  expect 2 "$pat" train --config "$C/c.json" --out "$C/out" --quiet "$@"
}
rawcfg_case() {  # rawcfg_case TEXT PATTERN: train with a config of this exact text
  printf '%s' "$1" >"$C/c.json"
  expect 2 "$2" train --config "$C/c.json" --out "$C/out" --quiet
  require_absent "$C/out/checkpoint.pt"
}
def cfg_syntax_truncated;      c_cfg_syntax_truncated() { rawcfg_case '{"seed": 1,' 'c\.json'; }
def cfg_syntax_trailing_comma; c_cfg_syntax_trailing_comma() { rawcfg_case '{"seed": 1,}' 'c\.json'; }
def cfg_syntax_trailing_text;  c_cfg_syntax_trailing_text() { rawcfg_case '{"seed": 1} x' 'c\.json'; }
def cfg_syntax_nan_literal;    c_cfg_syntax_nan_literal() { rawcfg_case '{"seed": NaN}' 'c\.json'; }
def cfg_duplicate_key;         c_cfg_duplicate_key() { rawcfg_case '{"seed":1,"seed":2}' 'seed'; }
def cfg_duplicate_key_nested
c_cfg_duplicate_key_nested() {
  rawcfg_case '{"train": {"epochs": 1, "batch_size": 8, "epochs": 2}}' 'epochs'
}
def cfg_top_array;   c_cfg_top_array() { rawcfg_case '[1, 2]' 'c\.json'; }
def cfg_empty_file;  c_cfg_empty_file() { rawcfg_case '' 'c\.json'; }
def cfg_whitespace_only; c_cfg_whitespace_only() { rawcfg_case '   
  ' 'c\.json'; }
def cfg_binary_garbage
c_cfg_binary_garbage() {
  jpy "$C/c.json" <<'EOF'
import sys
open(sys.argv[1], "wb").write(bytes((i * 131 + 7) % 256 for i in range(4096)))
EOF
  expect 2 'c\.json' train --config "$C/c.json" --out "$C/out" --quiet
}
def cfg_nul_byte
c_cfg_nul_byte() {
  printf '{"seed": 1,\0 "threads": 1}' >"$C/c.json"
  expect 2 'c\.json' train --config "$C/c.json" --out "$C/out" --quiet
}
def cfg_invalid_utf8
c_cfg_invalid_utf8() {
  printf '{"device": "cpu\xff\xfe"}' >"$C/c.json"
  expect 2 'c\.json|device' train --config "$C/c.json" --out "$C/out" --quiet
}
def cfg_utf8_bom
c_cfg_utf8_bom() {
  # A byte-order mark is accepted by nlohmann; either a clean parse (then the config is
  # incomplete -> still runs) or a refusal is fine, but it must not crash. We require 0 or 2.
  need cfgs || return
  { printf '\xef\xbb\xbf'; cat "$W/fx/float.json"; } >"$C/c.json"
  expect "0 2" 'c\.json' train --config "$C/c.json" --out "$C/out" --quiet
}
def cfg_deep_hidden_100000
c_cfg_deep_hidden_100000() {
  jpy "$C/c.json" <<'EOF'
import sys
n = 100000
open(sys.argv[1], "w").write('{"network": {"type": "mlp", "hidden": ' + "[" * n + "]" * n + "}}")
EOF
  expect 2 'c\.json|nest|deep' train --config "$C/c.json" --out "$C/out" --quiet
}
def cfg_deep_object_100000
c_cfg_deep_object_100000() {
  jpy "$C/c.json" <<'EOF'
import sys
n = 100000
open(sys.argv[1], "w").write('{"train": ' + '{"a": ' * n + "1" + "}" * n + "}")
EOF
  expect 2 'c\.json|nest|deep' train --config "$C/c.json" --out "$C/out" --quiet
}
def cfg_deep_unclosed_1000000
c_cfg_deep_unclosed_1000000() {
  jpy "$C/c.json" <<'EOF'
import sys
open(sys.argv[1], "w").write("[" * 1000000)
EOF
  expect 2 'c\.json|nest|deep' train --config "$C/c.json" --out "$C/out" --quiet
}
def cfg_too_large_file
c_cfg_too_large_file() {
  { printf '{"seed": 1, "x": "'; head -c $((70 * 1024 * 1024)) /dev/zero | tr '\0' 'a'; printf '"}'; } >"$C/c.json"
  expect 2 'c\.json' train --config "$C/c.json" --out "$C/out" --quiet
}
def cfg_hidden_10MB_array
c_cfg_hidden_10MB_array() {
  jpy "$C/c.json" <<'EOF'
import sys
n = 5 * 1024 * 1024  # "1," x 5M = 10 MB
open(sys.argv[1], "w").write('{"network": {"type": "mlp", "hidden": [' + "1," * (n - 1) + "1]}}")
EOF
  CT=90 expect 2 'hidden|layers|network' train --config "$C/c.json" --out "$C/out" --quiet
}
def cfg_layers_20000
c_cfg_layers_20000() {
  cfg_case 'c["network"]["hidden"] = [4] * 20000' 'hidden|layers|network'
}
def cfg_hidden_1e9;      c_cfg_hidden_1e9() { cfg_case 'c["network"]["hidden"] = [1000000000]' 'hidden'; }
def cfg_hidden_negative; c_cfg_hidden_negative() { cfg_case 'c["network"]["hidden"] = [-4]' 'hidden'; }
def cfg_hidden_string;   c_cfg_hidden_string() { cfg_case 'c["network"]["hidden"] = "256"' 'hidden'; }
def cfg_hidden_elem_str; c_cfg_hidden_elem_str() { cfg_case 'c["network"]["hidden"] = ["a"]' 'hidden'; }
def cfg_network_array;   c_cfg_network_array() { cfg_case 'c["network"] = []' 'network'; }
def cfg_network_type_bad; c_cfg_network_type_bad() { cfg_case 'c["network"]["type"] = "transformer"' 'type|network'; }
def cfg_number_1e999;    c_cfg_number_1e999() { rawcfg_case '{"train": {"epochs": 1e999}}' 'c\.json|epochs|finite'; }
def cfg_number_neg_1e999
c_cfg_number_neg_1e999() {
  rawcfg_case '{"train": {"optimizer": {"lr": -1e999}}}' 'c\.json|lr|finite'
}
def cfg_number_huge_int
c_cfg_number_huge_int() {
  rawcfg_case '{"seed": 123456789012345678901234567890}' 'c\.json|seed'
}
def cfg_threads_4294967297;  c_cfg_threads_4294967297() { cfg_case 'c["threads"] = 4294967297' 'threads'; }
def cfg_epochs_2pow40;       c_cfg_epochs_2pow40() { cfg_case 'c["train"]["epochs"] = 1099511627776' 'epochs'; }
def cfg_epochs_negative;     c_cfg_epochs_negative() { cfg_case 'c["train"]["epochs"] = -1' 'epochs'; }
def cfg_epochs_string;       c_cfg_epochs_string() { cfg_case 'c["train"]["epochs"] = "10"' 'epochs'; }
def cfg_batch_negative;      c_cfg_batch_negative() { cfg_case 'c["train"]["batch_size"] = -5' 'batch_size'; }
def cfg_seed_negative;       c_cfg_seed_negative() { cfg_case 'c["seed"] = -1' 'seed'; }
def cfg_lr_negative;         c_cfg_lr_negative() { cfg_case 'c["train"]["optimizer"]["lr"] = -0.1' 'lr'; }
def cfg_optimizer_bad;       c_cfg_optimizer_bad() { cfg_case 'c["train"]["optimizer"]["name"] = "lbfgs"' 'optimizer|name'; }
def cfg_warmup_too_long;     c_cfg_warmup_too_long() { cfg_case 'c["train"]["lr_schedule"]["warmup_epochs"] = 5' 'warmup'; }
def cfg_unknown_key_top;     c_cfg_unknown_key_top() { cfg_case 'c["sed"] = 1' 'sed'; }
def cfg_unknown_key_train;   c_cfg_unknown_key_train() { cfg_case 'c["train"]["epoch"] = 1' 'epoch'; }
def cfg_unknown_key_inq;     c_cfg_unknown_key_inq() { cfg_case 'as_inq(); c["inq"]["bitz"] = 2' 'bitz'; }
def cfg_algorithm_bad;       c_cfg_algorithm_bad() { cfg_case 'c["algorithm"] = "prune"' 'algorithm'; }
def cfg_device_cuda_absent;  c_cfg_device_cuda_absent() { cfg_case 'c["device"] = "cuda:7"' 'cuda|device'; }
def cfg_data_format_bad;     c_cfg_data_format_bad() { cfg_case 'c["data"]["format"] = "png"' 'format'; }
def cfg_val_size_too_big;    c_cfg_val_size_too_big() { cfg_case 'c["data"]["val_size"] = 100000' 'val_size'; }
def cfg_subset_too_big;      c_cfg_subset_too_big() { cfg_case 'c["data"]["subset"] = 100000' 'subset'; }
def cfg_synthetic_n_huge;    c_cfg_synthetic_n_huge() { cfg_case 'c["data"]["synthetic"]["n"] = 1 << 40' '\bn\b|synthetic'; }
def cfg_synthetic_dims_huge
c_cfg_synthetic_dims_huge() {
  cfg_case 'c["data"]["synthetic"].update(height=4096, width=4096, channels=4096)' 'height|width|channels|synthetic'
}
def cfg_lenet_input_too_small
c_cfg_lenet_input_too_small() {
  cfg_case 'c["data"]["synthetic"].update(height=2, width=2); c["network"] = {"type": "lenet"}' 'lenet|network|input|height|small'
}
def cfg_vgg_too_many_pools
c_cfg_vgg_too_many_pools() {
  cfg_case 'c["network"] = {"type": "vgg", "blocks": [4, "M", "M", "M", "M", "M", "M"], "fc": [8]}' 'vgg|network|blocks|input|small|pool'
}
def cfg_inq_bits_99;         c_cfg_inq_bits_99() { cfg_case 'as_inq(); c["inq"]["bits"] = 99' 'bits'; }
def cfg_inq_pretrain_too_long; c_cfg_inq_pretrain_too_long() { cfg_case 'as_inq(); c["inq"]["pretrain_epochs"] = 50' 'pretrain_epochs|epochs'; }
def cfg_inq_section_missing_float; c_cfg_inq_section_missing_float() { cfg_case 'c["inq"] = {"bits": 2}' 'inq'; }
def cfg_ana_levels_bad;      c_cfg_ana_levels_bad() { cfg_case 'as_ana(); c["ana"]["levels"] = "quaternary"' 'levels'; }
def cfg_init_checkpoint_missing
c_cfg_init_checkpoint_missing() {
  cfg_case 'as_inq(); c["inq"]["init_checkpoint"] = "'"$C"'/nope.pt"' 'nope\.pt'
}
def cfg_init_checkpoint_garbage
c_cfg_init_checkpoint_garbage() {
  head -c 3000 /dev/zero | tr '\0' 'z' >"$C/garbage.pt"
  cfg_case 'as_inq(); c["inq"]["init_checkpoint"] = "'"$C"'/garbage.pt"' 'garbage\.pt'
}
def cfg_init_checkpoint_wrong_arch
c_cfg_init_checkpoint_wrong_arch() {
  need run || return
  cfg_case 'as_inq(); c["network"]["hidden"] = [16]; c["inq"]["init_checkpoint"] = "'"$W"'/fx/run/checkpoint.pt"' 'checkpoint|shape|network|hidden'
}
def cfg_init_checkpoint_dir
c_cfg_init_checkpoint_dir() {
  cfg_case 'as_inq(); c["inq"]["init_checkpoint"] = "'"$C"'"' 'init_checkpoint|directory|'"$(basename "$C")"
}
def cfg_config_is_dir;    c_cfg_config_is_dir() { expect 2 'directory|'"$(basename "$C")" train --config "$C" --out "$C/out" --quiet; }
def cfg_config_missing;   c_cfg_config_missing() { expect 2 'nope\.json' train --config "$C/nope.json" --out "$C/out" --quiet; }
def cfg_config_fifo
c_cfg_config_fifo() {
  mkfifo "$C/c.json"
  CT=20 expect 2 'c\.json' train --config "$C/c.json" --out "$C/out" --quiet
}
def cfg_config_dev_zero;  c_cfg_config_dev_zero() { CT=20 expect 2 '/dev/zero' train --config /dev/zero --out "$C/out" --quiet; }
def cfg_set_epochs_1e999; c_cfg_set_epochs_1e999() { need cfgs && expect 2 'epochs|1e999' train --config "$W/fx/float.json" --set train.epochs=1e999 --out "$C/out" --quiet; }
def cfg_set_threads_4294967297; c_cfg_set_threads_4294967297() { need cfgs && expect 2 'threads' train --config "$W/fx/float.json" --set threads=4294967297 --out "$C/out" --quiet; }
def cfg_set_unknown_key;  c_cfg_set_unknown_key() { need cfgs && expect 2 'foo' train --config "$W/fx/float.json" --set train.foo=1 --out "$C/out" --quiet; }
def cfg_set_no_equals;    c_cfg_set_no_equals() { need cfgs && expect 2 'train\.epochs|--set|=' train --config "$W/fx/float.json" --set train.epochs --out "$C/out" --quiet; }
def cfg_set_through_number; c_cfg_set_through_number() { need cfgs && expect 2 'epochs' train --config "$W/fx/float.json" --set train.epochs.x=1 --out "$C/out" --quiet; }
def cfg_set_deep_value
c_cfg_set_deep_value() {
  need cfgs || return
  local v
  v=$(printf '%*s' 60000 '' | tr ' ' '[')$(printf '%*s' 60000 '' | tr ' ' ']')  # < 128 KiB
  expect 2 'hidden|nest|deep|--set' train --config "$W/fx/float.json" --set "network.hidden=$v" --out "$C/out" --quiet
}
def cfg_set_duplicate_json; c_cfg_set_duplicate_json() { need cfgs && expect 2 'network|duplicate|type' train --config "$W/fx/float.json" --set 'network={"type":"mlp","type":"mlp"}' --out "$C/out" --quiet; }

# ---- CLI flags ----------------------------------------------------------------------------------
flag_train() { need cfgs && expect 2 "$1" train --config "$W/fx/float.json" --out "$C/out" --quiet "${@:2}"; }
def flag_train_epochs_neg;   c_flag_train_epochs_neg() { flag_train 'epochs' --epochs -5; }
def flag_train_epochs_text;  c_flag_train_epochs_text() { flag_train 'epochs' --epochs ten; }
def flag_train_epochs_1e999; c_flag_train_epochs_1e999() { flag_train 'epochs' --epochs 1e999; }
def flag_train_subset_neg;   c_flag_train_subset_neg() { flag_train 'subset' --subset -2; }
def flag_train_threads_zero; c_flag_train_threads_zero() { flag_train 'threads' --threads 0; }
def flag_train_threads_4294967297; c_flag_train_threads_4294967297() { flag_train 'threads' --threads 4294967297; }
def flag_train_seed_neg;     c_flag_train_seed_neg() { flag_train 'seed' --seed -1; }
def flag_train_device_bad;   c_flag_train_device_bad() { flag_train 'device|tpu' --device tpu; }
def flag_train_unknown;      c_flag_train_unknown() { flag_train 'bogus' --bogus 1; }
def flag_train_missing_value; c_flag_train_missing_value() { flag_train 'epochs' --epochs; }
def flag_train_positional;   c_flag_train_positional() { flag_train 'stray|positional|extra|unrecognised|unrecognized' stray; }
def flag_export_positional; c_flag_export_positional() { need run && expect 2 'stray|positional|extra|unrecognised|unrecognized' export --run "$W/fx/run" --out "$C/m.qsx" stray; }
def flag_infer_positional;  c_flag_infer_positional() { need export && expect 2 'stray|positional|extra|unrecognised|unrecognized' infer --model "$W/fx/model.qsx" --data "$W/fx/idx" stray; }
def flag_train_no_out;       c_flag_train_no_out() { need cfgs && expect 2 'out' train --config "$W/fx/float.json"; }
def flag_train_no_config;    c_flag_train_no_config() { expect 2 'config' train --out "$C/out"; }
def flag_train_resume_with_config; c_flag_train_resume_with_config() { need run && expect 2 'resume|config' train --resume --out "$W/fx/run" --config "$W/fx/float.json"; }
def flag_train_schedule_on_float; c_flag_train_schedule_on_float() { need run && flag_train 'schedule|float' --schedule "$W/fx/run/schedule.json"; }
def flag_unknown_command;    c_flag_unknown_command() { expect 2 'trian' trian; }
def flag_no_command;         c_flag_no_command() { expect 2 '' ; }
def flag_sweep_seeds_zero;   c_flag_sweep_seeds_zero() { need sweep && expect 2 'seeds' sweep --config "$W/fx/inq.json" --grid "$W/fx/grid.json" --seeds 0 --out "$C/out" --quiet; }
def flag_sweep_jobs_zero;    c_flag_sweep_jobs_zero() { need sweep && expect 2 'jobs' sweep --config "$W/fx/inq.json" --grid "$W/fx/grid.json" --jobs 0 --out "$C/out" --quiet; }
def flag_sweep_no_grid;      c_flag_sweep_no_grid() { need cfgs && expect 2 'grid' sweep --config "$W/fx/inq.json" --out "$C/out"; }
def flag_sweep_unknown;      c_flag_sweep_unknown() { need sweep && expect 2 'bogus' sweep --config "$W/fx/inq.json" --grid "$W/fx/grid.json" --out "$C/out" --bogus; }
def flag_compare_jobs_zero;  c_flag_compare_jobs_zero() { need cfgs && echo '{}' >"$C/x.json" && expect 2 'jobs' compare --config "$C/x.json" --out "$C/out" --jobs 0; }
def flag_compare_unknown;    c_flag_compare_unknown() { expect 2 'epochs' compare --config "$C/x.json" --out "$C/out" --epochs 3; }
def flag_compare_no_out;     c_flag_compare_no_out() { need compare && expect 2 'out' compare --config "$W/fx/compare.json"; }
def flag_meta_steps_zero;    c_flag_meta_steps_zero() { need meta && expect 2 'steps' meta-train --config "$W/fx/meta.json" --out "$C/out" --steps 0; }
def flag_meta_threads_4294967297; c_flag_meta_threads_4294967297() { need meta && expect 2 'threads' meta-train --config "$W/fx/meta.json" --out "$C/out" --threads 4294967297; }
def flag_meta_unknown;       c_flag_meta_unknown() { need meta && expect 2 'epochs' meta-train --config "$W/fx/meta.json" --out "$C/out" --epochs 3; }
def flag_meta_no_out;        c_flag_meta_no_out() { need meta && expect 2 'out' meta-train --config "$W/fx/meta.json"; }
def flag_apply_epochs_neg;   c_flag_apply_epochs_neg() { need meta && expect 2 'epochs' apply --controller "$W/fx/meta" --config "$W/fx/inq.json" --out "$C/out" --epochs -5; }
def flag_apply_base_bad;     c_flag_apply_base_bad() { need meta && expect 2 'base|bogus' apply --controller "$W/fx/meta" --config "$W/fx/inq.json" --out "$C/out" --base bogus; }
def flag_apply_no_controller; c_flag_apply_no_controller() { need cfgs && expect 2 'controller' apply --config "$W/fx/inq.json" --out "$C/out"; }
def flag_apply_schedule;     c_flag_apply_schedule() { need meta run && expect 2 'schedule' apply --controller "$W/fx/meta" --config "$W/fx/inq.json" --out "$C/out" --schedule "$W/fx/run/schedule.json"; }
def flag_export_no_run;      c_flag_export_no_run() { expect 2 'run' export --out "$C/m.qsx"; }
def flag_export_no_out;      c_flag_export_no_out() { need run && expect 2 'out' export --run "$W/fx/run"; }
def flag_export_unknown;     c_flag_export_unknown() { need run && expect 2 'bits' export --run "$W/fx/run" --out "$C/m.qsx" --bits 3; }
def flag_infer_limit_neg;    c_flag_infer_limit_neg() { need export && expect 2 'limit' infer --model "$W/fx/model.qsx" --data "$W/fx/idx" --limit -1; }
def flag_infer_no_data;      c_flag_infer_no_data() { need export && expect 2 'data' infer --model "$W/fx/model.qsx"; }
def flag_bench_threads_zero; c_flag_bench_threads_zero() { expect 2 'threads' bench --threads 0 --seconds 0.05; }
def flag_bench_threads_4294967297; c_flag_bench_threads_4294967297() { expect 2 'threads' bench --threads 4294967297; }
def flag_bench_batch_zero;   c_flag_bench_batch_zero() { expect 2 'batch' bench --batch 0; }
def flag_bench_seconds_zero; c_flag_bench_seconds_zero() { expect 2 'seconds' bench --seconds 0; }
def flag_bench_seconds_nan;  c_flag_bench_seconds_nan() { CT=30 expect 2 'seconds' bench --seconds nan; }
def flag_schedules_no_sub;   c_flag_schedules_no_sub() { expect 2 '' schedules; }
def flag_schedules_bad_sub;  c_flag_schedules_bad_sub() { expect 2 'draw' schedules draw; }
def flag_schedules_show_no_config; c_flag_schedules_show_no_config() { expect 2 'config' schedules show; }
def flag_schedules_show_layers_zero; c_flag_schedules_show_layers_zero() { need cfgs && expect 2 'layers' schedules show --config "$W/fx/inq.json" --layers 0; }
def flag_schedules_show_layers_huge; c_flag_schedules_show_layers_huge() { need cfgs && expect 2 'layers' schedules show --config "$W/fx/inq.json" --layers 4294967297; }
def flag_schedules_show_float; c_flag_schedules_show_float() { need cfgs && expect 2 'float|algorithm|inq|ana' schedules show --config "$W/fx/float.json"; }
def flag_summarize_none;     c_flag_summarize_none() { expect 2 'run' summarize; }
def flag_summarize_missing;  c_flag_summarize_missing() { expect 2 'nope' summarize "$C/nope"; }
def flag_sweep_report_missing; c_flag_sweep_report_missing() { expect 2 'results\.csv|nope' sweep-report --out "$C/nope"; }
def flag_demo_meta_steps_neg; c_flag_demo_meta_steps_neg() { expect 2 'meta-steps' demo --out "$C/out" --meta-steps -1; }
def flag_launch_nproc_zero;  c_flag_launch_nproc_zero() { expect 2 'nproc' launch --nproc 0 -- summarize "$C"; }
def flag_launch_no_command;  c_flag_launch_no_command() { expect 2 'command' launch --nproc 2; }

# ---- data directories ---------------------------------------------------------------------------
data_case() {  # data_case PATTERN: train the IDX config on --data $C/d (prepared by the caller)
  need cfgs || return
  expect 2 "$1" train --config "$W/fx/idx.json" --data "$C/d" --out "$C/out" --quiet
}
def data_valid_control
c_data_valid_control() {
  need cfgs || return
  expect 0 '' train --config "$W/fx/idx.json" --out "$C/out" --quiet
}
def data_dir_missing;  c_data_dir_missing() { data_case "$(basename "$C")/d|d'"; }
def data_dir_empty;    c_data_dir_empty() { mkdir "$C/d"; data_case 'train-images|missing'; }
def data_missing_train_images; c_data_missing_train_images() { idx_dir "$C/d"; rm "$C/d/train-images-idx3-ubyte"; data_case 'train-images'; }
def data_missing_test_labels;  c_data_missing_test_labels() { idx_dir "$C/d"; rm "$C/d/t10k-labels-idx1-ubyte"; data_case 't10k-labels'; }
def data_images_is_dir; c_data_images_is_dir() { idx_dir "$C/d"; rm "$C/d/train-images-idx3-ubyte"; mkdir "$C/d/train-images-idx3-ubyte"; data_case 'train-images'; }
def data_truncated_images; c_data_truncated_images() { idx_dir "$C/d"; truncate_to "$C/d/train-images-idx3-ubyte" 5000; data_case 'train-images'; }
def data_truncated_header; c_data_truncated_header() { idx_dir "$C/d"; truncate_to "$C/d/train-images-idx3-ubyte" 10; data_case 'train-images'; }
def data_empty_images; c_data_empty_images() { idx_dir "$C/d"; : >"$C/d/train-images-idx3-ubyte"; data_case 'train-images'; }
def data_wrong_magic_images; c_data_wrong_magic_images() { idx_dir "$C/d"; idx_images "$C/d/train-images-idx3-ubyte" 200 8 8 0x901; data_case 'train-images|magic'; }
def data_labels_as_images; c_data_labels_as_images() { idx_dir "$C/d"; cp "$C/d/train-labels-idx1-ubyte" "$C/d/train-images-idx3-ubyte"; data_case 'train-images|magic'; }
def data_header_huge_count; c_data_header_huge_count() { idx_dir "$C/d"; idx_images "$C/d/train-images-idx3-ubyte" 200 8 8 0x803 2147483647; data_case 'train-images'; }
def data_header_huge_dims
c_data_header_huge_dims() {
  idx_dir "$C/d"
  idx_images "$C/d/train-images-idx3-ubyte" 0 16777216 16777216 0x803 65536
  data_case 'train-images'
}
def data_header_zero_count; c_data_header_zero_count() { idx_dir "$C/d"; idx_images "$C/d/train-images-idx3-ubyte" 0 8 8; idx_labels "$C/d/train-labels-idx1-ubyte" 0; data_case 'train-images|count|empty|val_size'; }
def data_count_mismatch; c_data_count_mismatch() { idx_dir "$C/d"; idx_labels "$C/d/train-labels-idx1-ubyte" 199; data_case 'train-labels|train-images'; }
def data_label_out_of_range; c_data_label_out_of_range() { idx_dir "$C/d"; idx_labels "$C/d/train-labels-idx1-ubyte" 200 250; data_case 'train-labels|label'; }
def data_test_shape_mismatch; c_data_test_shape_mismatch() { idx_dir "$C/d"; idx_images "$C/d/t10k-images-idx3-ubyte" 64 4 4; data_case 't10k|test|shape|size'; }
def data_gz_corrupt
c_data_gz_corrupt() {
  idx_dir "$C/d"
  gzip -9 "$C/d/train-images-idx3-ubyte"
  flip "$C/d/train-images-idx3-ubyte.gz" 60 8
  data_case 'train-images'
}
def data_gz_truncated
c_data_gz_truncated() {
  idx_dir "$C/d"
  gzip -9 "$C/d/train-images-idx3-ubyte"
  truncate_to "$C/d/train-images-idx3-ubyte.gz" $(($(fsize "$C/d/train-images-idx3-ubyte.gz") / 2))
  data_case 'train-images'
}
def data_gz_not_gzip
c_data_gz_not_gzip() {
  # a raw IDX file named .gz: reading it raw (the content decides) or refusing are both fine
  need cfgs || return
  idx_dir "$C/d"
  mv "$C/d/train-images-idx3-ubyte" "$C/d/train-images-idx3-ubyte.gz"
  expect "0 2" 'train-images' train --config "$W/fx/idx.json" --data "$C/d" --out "$C/out" --quiet
}
def data_gz_bomb
c_data_gz_bomb() {
  # A gzip file whose header announces 65536 images of 28x28 but inflates to 100 MB of zeros.
  idx_dir "$C/d"
  rm "$C/d/train-images-idx3-ubyte"
  { printf '\x00\x00\x08\x03\x00\x01\x00\x00\x00\x00\x00\x1c\x00\x00\x00\x1c'; head -c 100000000 /dev/zero; } | gzip -1 >"$C/d/train-images-idx3-ubyte.gz"
  data_case 'train-images|train-labels'
}
def data_cifar_missing
c_data_cifar_missing() {
  need cfgs || return
  mkdir -p "$C/d"
  cfg "$C/c.json" 'c["data"] = {"format": "cifar10", "root": "'"$C"'/d", "val_size": 10}'
  expect 2 'data_batch|cifar|test_batch' train --config "$C/c.json" --out "$C/out" --quiet
}
def data_cifar_truncated
c_data_cifar_truncated() {
  need cfgs || return
  mkdir -p "$C/d"
  local i
  for i in 1 2 3 4 5; do head -c 3073 /dev/zero >"$C/d/data_batch_$i.bin"; done
  head -c 3000 /dev/zero >"$C/d/test_batch.bin"
  cfg "$C/c.json" 'c["data"] = {"format": "cifar10", "root": "'"$C"'/d", "val_size": 1}'
  expect 2 'test_batch|cifar|3073|size' train --config "$C/c.json" --out "$C/out" --quiet
}

# ---- checkpoints (train --resume on a copy of the finished run) ---------------------------------
ckpt_case() {  # ckpt_case PATTERN MUTATION...: mutate $C/r, then train --resume
  local pat=$1
  shift
  need run || return
  copy_run run r
  "$@"
  expect 2 "$pat" train --resume --out "$C/r" --quiet
}
ck_flip() { flip "$C/r/checkpoint.pt" "$1" "${2:-1}"; }
ck_flip_frac() { flip "$C/r/checkpoint.pt" $(($(fsize "$C/r/checkpoint.pt") * $1 / 100)) "${2:-4}"; }
def ckpt_valid_control;   c_ckpt_valid_control() { need run && copy_run run r && expect 0 '' train --resume --out "$C/r" --quiet; }
def ckpt_flip_first_byte; c_ckpt_flip_first_byte() { ckpt_case 'checkpoint\.pt' ck_flip 0; }
def ckpt_flip_50pct;      c_ckpt_flip_50pct() { ckpt_case 'checkpoint\.pt' ck_flip_frac 50; }
def ckpt_flip_90pct;      c_ckpt_flip_90pct() { ckpt_case 'checkpoint\.pt' ck_flip_frac 90; }
def ckpt_flip_last_bytes; c_ckpt_flip_last_bytes() { ckpt_case 'checkpoint\.pt' ck_flip -8 8; }
def ckpt_truncate_half;   c_ckpt_truncate_half() { ckpt_case 'checkpoint\.pt' eval 'truncate_to "$C/r/checkpoint.pt" $(($(fsize "$C/r/checkpoint.pt") / 2))'; }
def ckpt_truncate_100;    c_ckpt_truncate_100() { ckpt_case 'checkpoint\.pt' truncate_to "$C/r/checkpoint.pt" 100; }
def ckpt_empty;           c_ckpt_empty() { ckpt_case 'checkpoint\.pt' truncate_to "$C/r/checkpoint.pt" 0; }
def ckpt_is_dir;          c_ckpt_is_dir() { ckpt_case 'checkpoint\.pt' eval 'rm "$C/r/checkpoint.pt"; mkdir "$C/r/checkpoint.pt"'; }
def ckpt_missing;         c_ckpt_missing() { ckpt_case 'checkpoint\.pt' rm "$C/r/checkpoint.pt"; }
def ckpt_of_float_run
c_ckpt_of_float_run() {
  need floatrun || return
  ckpt_case 'checkpoint\.pt|inq|algorithm' cp "$W/fx/floatrun/checkpoint.pt" "$C/r/checkpoint.pt"
}
def ckpt_config_hidden_changed; c_ckpt_config_hidden_changed() { ckpt_case 'checkpoint\.pt|config|shape|hidden' jedit "$C/r/config.json" 'j["network"]["hidden"] = [16]'; }
def ckpt_config_garbage;  c_ckpt_config_garbage() { ckpt_case 'config\.json' eval 'printf "{oops" >"$C/r/config.json"'; }
def ckpt_config_missing;  c_ckpt_config_missing() { ckpt_case 'config\.json' rm "$C/r/config.json"; }
def ckpt_config_invalid;  c_ckpt_config_invalid() { ckpt_case 'epochs' jedit "$C/r/config.json" 'j["train"]["epochs"] = 0'; }
def ckpt_marker_garbage;  c_ckpt_marker_garbage() { ckpt_case 'qsched-run' eval 'printf "garbage" >"$C/r/.qsched-run"'; }
def ckpt_marker_other_kind; c_ckpt_marker_other_kind() { ckpt_case 'apply|kind|train|'"$(basename "$C")" eval 'echo "{\"format\": \"qsched-run\", \"version\": 1, \"kind\": \"apply\"}" >"$C/r/.qsched-run"'; }
def ckpt_marker_missing;  c_ckpt_marker_missing() { ckpt_case "$(basename "$C")/r|qsched-run|marker" rm "$C/r/.qsched-run"; }
def ckpt_resume_empty_dir; c_ckpt_resume_empty_dir() { mkdir "$C/r"; expect 2 "$(basename "$C")/r|config|checkpoint" train --resume --out "$C/r" --quiet; }
def ckpt_resume_missing_dir; c_ckpt_resume_missing_dir() { expect 2 "nope" train --resume --out "$C/nope" --quiet; }
def ckpt_new_run_over_finished
c_ckpt_new_run_over_finished() {
  need run || return
  copy_run run r
  cp "$C/r/checkpoint.pt" "$C/ckpt.orig"
  expect 2 'already|resume|'"$(basename "$C")" train --config "$W/fx/inq.json" --out "$C/r" --quiet
  require_file "$C/r/checkpoint.pt" "$C/ckpt.orig"
}

# ---- controllers (qsched apply) -----------------------------------------------------------------
ctrl_case() {  # ctrl_case PATTERN MUTATION...: mutate a copy $C/m of the controller, then apply
  local pat=$1
  shift
  need meta || return
  mkdir -p "$C/m"
  cp "$W/fx/meta/controller.json" "$W/fx/meta/controller.pt" "$C/m/"
  "$@"
  expect 2 "$pat" apply --controller "$C/m" --config "$W/fx/inq.json" --out "$C/out" --quiet
  require_absent "$C/out/checkpoint.pt"
}
def ctrl_valid_control;     c_ctrl_valid_control() { need apply; }  # the fixture is the check
def ctrl_json_format_5;     c_ctrl_json_format_5() { ctrl_case 'controller\.json|format' jedit "$C/m/controller.json" 'j["format"] = 5'; }
def ctrl_json_version_99;   c_ctrl_json_version_99() { ctrl_case 'controller\.json|version' jedit "$C/m/controller.json" 'j["version"] = 99'; }
def ctrl_json_algorithm_ana; c_ctrl_json_algorithm_ana() { ctrl_case 'controller|algorithm|ana' jedit "$C/m/controller.json" 'j["algorithm"] = "ana"'; }
def ctrl_json_hidden_changed; c_ctrl_json_hidden_changed() { ctrl_case 'controller|hidden|parameters|match' jedit "$C/m/controller.json" 'j["controller"]["hidden"] = 5'; }
def ctrl_json_hidden_huge;  c_ctrl_json_hidden_huge() { ctrl_case 'controller|hidden|parameters|match' jedit "$C/m/controller.json" 'j["controller"]["hidden"] = 1 << 40'; }
def ctrl_json_num_params;   c_ctrl_json_num_params() { ctrl_case 'controller|num_parameters|parameters' jedit "$C/m/controller.json" 'j["num_parameters"] += 1'; }
def ctrl_json_features;     c_ctrl_json_features() { ctrl_case 'controller|feature' jedit "$C/m/controller.json" 'j["features"]["names"] = j["features"]["names"][:-1]'; }
def ctrl_json_feature_version; c_ctrl_json_feature_version() { ctrl_case 'controller|feature|version' jedit "$C/m/controller.json" 'j["features"]["version"] = 999'; }
def ctrl_json_base_bad;     c_ctrl_json_base_bad() { ctrl_case 'controller|base_schedule|family' jedit "$C/m/controller.json" 'j["base_schedule"] = {"family": "bogus"}'; }
def ctrl_json_unknown_key;  c_ctrl_json_unknown_key() { ctrl_case 'controller|extra' jedit "$C/m/controller.json" 'j["extra"] = 1'; }
def ctrl_json_garbage;      c_ctrl_json_garbage() { ctrl_case 'controller\.json' eval 'printf "{\"format\": " >"$C/m/controller.json"'; }
def ctrl_json_missing;      c_ctrl_json_missing() { ctrl_case 'controller\.json' rm "$C/m/controller.json"; }
def ctrl_pt_missing;        c_ctrl_pt_missing() { ctrl_case 'controller\.pt' rm "$C/m/controller.pt"; }
def ctrl_pt_truncated;      c_ctrl_pt_truncated() { ctrl_case 'controller\.pt' eval 'truncate_to "$C/m/controller.pt" $(($(fsize "$C/m/controller.pt") / 2))'; }
def ctrl_pt_flip_start;     c_ctrl_pt_flip_start() { ctrl_case 'controller\.pt' flip "$C/m/controller.pt" 0 4; }
def ctrl_pt_flip_middle;    c_ctrl_pt_flip_middle() { ctrl_case 'controller\.pt' eval 'flip "$C/m/controller.pt" $(($(fsize "$C/m/controller.pt") / 2)) 4'; }
def ctrl_pt_is_dir;         c_ctrl_pt_is_dir() { ctrl_case 'controller\.pt' eval 'rm "$C/m/controller.pt"; mkdir "$C/m/controller.pt"'; }
def ctrl_pt_is_checkpoint;  c_ctrl_pt_is_checkpoint() { need run && ctrl_case 'controller\.pt' cp "$W/fx/run/checkpoint.pt" "$C/m/controller.pt"; }
def ctrl_dir_missing;       c_ctrl_dir_missing() { need cfgs && expect 2 'nope' apply --controller "$C/nope" --config "$W/fx/inq.json" --out "$C/out" --quiet; }
def ctrl_dir_is_run;        c_ctrl_dir_is_run() { need run && expect 2 'controller' apply --controller "$W/fx/run" --config "$W/fx/inq.json" --out "$C/out" --quiet; }
def ctrl_inq_on_ana_config; c_ctrl_inq_on_ana_config() { need meta && expect 2 'inq|ana|algorithm' apply --controller "$W/fx/meta" --config "$W/fx/ana.json" --out "$C/out" --quiet; }
def ctrl_inq_on_float_config; c_ctrl_inq_on_float_config() { need meta && expect 2 'inq|float|algorithm' apply --controller "$W/fx/meta" --config "$W/fx/float.json" --out "$C/out" --quiet; }
apply_resume_case() {  # mutate a copy $C/a of the finished apply run, then apply --resume
  local pat=$1
  shift
  need apply || return
  cp -a "$W/fx/applied" "$C/a"
  "$@"
  expect 2 "$pat" apply --resume --out "$C/a" --quiet
}
def ctrl_resume_copy_flipped; c_ctrl_resume_copy_flipped() { apply_resume_case 'controller' eval 'flip "$C/a/controller/controller.pt" $(($(fsize "$C/a/controller/controller.pt") / 2)) 4'; }
def ctrl_resume_copy_json_edit; c_ctrl_resume_copy_json_edit() { apply_resume_case 'controller|fingerprint|altered' jedit "$C/a/controller/controller.json" 'j["meta"]["step"] = 77'; }
def ctrl_resume_apply_json_garbage; c_ctrl_resume_apply_json_garbage() { apply_resume_case 'apply\.json' eval 'printf "[" >"$C/a/apply.json"'; }
def ctrl_resume_apply_json_missing; c_ctrl_resume_apply_json_missing() { apply_resume_case 'apply\.json' rm "$C/a/apply.json"; }
def ctrl_resume_base_contradicts; c_ctrl_resume_base_contradicts() { need apply && cp -a "$W/fx/applied" "$C/a" && expect 2 'base' apply --resume --out "$C/a" --base config --quiet; }

# ---- exports (qsched export) --------------------------------------------------------------------
def export_unfinished_run
c_export_unfinished_run() {
  need run || return
  copy_run run r
  rm "$C/r/summary.json"
  expect 2 'summary|finished|'"$(basename "$C")" export --run "$C/r" --out "$C/m.qsx"
  require_absent "$C/m.qsx"
}
def export_float_run;  c_export_float_run() { need floatrun && expect 2 'float|inq|ana|algorithm' export --run "$W/fx/floatrun" --out "$C/m.qsx"; }
def export_run_missing; c_export_run_missing() { expect 2 'nope' export --run "$C/nope" --out "$C/m.qsx"; }
def export_run_ckpt_flipped
c_export_run_ckpt_flipped() {
  need run || return
  copy_run run r
  flip "$C/r/checkpoint.pt" $(($(fsize "$C/r/checkpoint.pt") / 2)) 4
  expect 2 'checkpoint\.pt' export --run "$C/r" --out "$C/m.qsx"
}
def export_run_summary_edited
c_export_run_summary_edited() {
  need run || return
  copy_run run r
  jedit "$C/r/summary.json" 'j["test_acc"] = "x"'
  expect 2 'summary|test_acc' export --run "$C/r" --out "$C/m.qsx"
}
def export_out_is_checkpoint
c_export_out_is_checkpoint() {
  need run || return
  copy_run run r
  cp "$C/r/checkpoint.pt" "$C/ckpt.orig"
  expect 2 'checkpoint\.pt' export --run "$C/r" --out "$C/r/checkpoint.pt"
  require_file "$C/r/checkpoint.pt" "$C/ckpt.orig"
}
def export_out_is_checkpoint_force
c_export_out_is_checkpoint_force() {
  need run || return
  copy_run run r
  cp "$C/r/checkpoint.pt" "$C/ckpt.orig"
  expect 2 'checkpoint\.pt' export --run "$C/r" --out "$C/r/checkpoint.pt" --force
  require_file "$C/r/checkpoint.pt" "$C/ckpt.orig"
}
def export_out_is_checkpoint_relative
c_export_out_is_checkpoint_relative() {
  # the same file through another spelling of the path
  need run || return
  copy_run run r
  mkdir "$C/r/sub"
  cp "$C/r/checkpoint.pt" "$C/ckpt.orig"
  expect 2 'checkpoint\.pt' export --run "$C/r" --out "$C/r/sub/../checkpoint.pt" --force
  require_file "$C/r/checkpoint.pt" "$C/ckpt.orig"
}
def export_out_is_checkpoint_symlink
c_export_out_is_checkpoint_symlink() {
  need run || return
  copy_run run r
  cp "$C/r/checkpoint.pt" "$C/ckpt.orig"
  ln -s "$C/r/checkpoint.pt" "$C/link.qsx"
  # replacing the symlink itself is fine; writing through it into the run directory is not
  expect "0 2" 'link\.qsx|checkpoint' export --run "$C/r" --out "$C/link.qsx" --force
  require_file "$C/r/checkpoint.pt" "$C/ckpt.orig"
}
def export_json_is_config
c_export_json_is_config() {
  need run || return
  copy_run run r
  cp "$C/r/config.json" "$C/config.orig"
  expect 2 'config\.json' export --run "$C/r" --out "$C/m.qsx" --json "$C/r/config.json" --force
  require_file "$C/r/config.json" "$C/config.orig"
}
def export_json_same_as_out; c_export_json_same_as_out() { need run && expect 2 'json|same' export --run "$W/fx/run" --out "$C/m.qsx" --json "$C/m.qsx"; }
def export_out_is_dir;  c_export_out_is_dir() { need run && mkdir "$C/d" && expect 2 "$(basename "$C")/d|regular|directory" export --run "$W/fx/run" --out "$C/d"; }
def export_out_foreign_file
c_export_out_foreign_file() {
  need run || return
  echo "precious" >"$C/keep.qsx"
  cp "$C/keep.qsx" "$C/keep.orig"
  expect 2 'keep\.qsx' export --run "$W/fx/run" --out "$C/keep.qsx"
  require_file "$C/keep.qsx" "$C/keep.orig"
}

# ---- export files (qsched infer) ----------------------------------------------------------------
infer_case() {  # infer_case PATTERN OP ARGS...: derive $C/m.qsx with the qsx tool, then infer
  local pat=$1
  shift
  need export || return
  qsx "$1" "$W/fx/model.qsx" "$C/m.qsx" "${@:2}" || { fail fixture "qsx tool failed"; return; }
  expect 2 "$pat" infer --model "$C/m.qsx" --data "$W/fx/idx"
}
infer_raw() {  # infer_raw PATTERN MUTATION...: a copy $C/m.qsx mutated by shell commands
  local pat=$1
  shift
  need export || return
  cp "$W/fx/model.qsx" "$C/m.qsx"
  "$@"
  expect 2 "$pat" infer --model "$C/m.qsx" --data "$W/fx/idx"
}
def infer_valid_control;   c_infer_valid_control() { need export && expect 0 '' infer --model "$W/fx/model.qsx" --data "$W/fx/idx"; }
def infer_flip_magic;      c_infer_flip_magic() { infer_raw 'm\.qsx' flip "$C/m.qsx" 0; }
def infer_flip_header;     c_infer_flip_header() { infer_raw 'm\.qsx' flip "$C/m.qsx" 40; }
def infer_flip_payload;    c_infer_flip_payload() { infer_raw 'm\.qsx' eval 'flip "$C/m.qsx" $(($(fsize "$C/m.qsx") * 3 / 4))'; }
def infer_truncate_half;   c_infer_truncate_half() { infer_raw 'm\.qsx' eval 'truncate_to "$C/m.qsx" $(($(fsize "$C/m.qsx") / 2))'; }
def infer_truncate_preamble; c_infer_truncate_preamble() { infer_raw 'm\.qsx' truncate_to "$C/m.qsx" 20; }
def infer_empty;           c_infer_empty() { infer_raw 'm\.qsx' truncate_to "$C/m.qsx" 0; }
def infer_is_dir;          c_infer_is_dir() { need export && mkdir "$C/m.qsx" && expect 2 'm\.qsx' infer --model "$C/m.qsx" --data "$W/fx/idx"; }
def infer_missing;         c_infer_missing() { need export && expect 2 'nope\.qsx' infer --model "$C/nope.qsx" --data "$W/fx/idx"; }
def infer_is_checkpoint;   c_infer_is_checkpoint() { need export run && expect 2 'checkpoint\.pt' infer --model "$W/fx/run/checkpoint.pt" --data "$W/fx/idx"; }
def infer_trailing_bytes;  c_infer_trailing_bytes() { infer_case 'm\.qsx' append 16; }
def infer_version_99;      c_infer_version_99() { infer_case 'm\.qsx|version' pre ver 99; }
def infer_header_bytes_huge; c_infer_header_bytes_huge() { infer_case 'm\.qsx' pre hb 0xFFFFFFFF; }
def infer_payload_bytes_huge; c_infer_payload_bytes_huge() { infer_case 'm\.qsx' pre pb 0x7FFFFFFFFFFFFFFF; }
def infer_record_count_huge; c_infer_record_count_huge() { infer_case 'm\.qsx' pre rc 0xFFFFFFFF; }
def infer_record_count_zero; c_infer_record_count_zero() { infer_case 'm\.qsx' pre rc 0; }
def infer_crc_wrong;       c_infer_crc_wrong() { infer_case 'm\.qsx|crc' pre crc 0x12345678; }
def infer_header_not_json; c_infer_header_not_json() { infer_case 'm\.qsx' rawheader '{"format": '; }
def infer_header_deep;     c_infer_header_deep() { infer_case 'm\.qsx|nest|deep' deepheader 100000; }
def infer_header_dup_key;  c_infer_header_dup_key() { infer_case 'm\.qsx|duplicate' rawheader '{"format": "qsched-export", "format": "qsched-export"}'; }
def infer_header_format_bad; c_infer_header_format_bad() { infer_case 'm\.qsx|format' header 'h["format"] = "onnx"'; }
def infer_header_input_huge
c_infer_header_input_huge() {
  infer_case 'm\.qsx|input|height|width|expects' header 'h["input"] = {"channels": 1, "height": 16777216, "width": 16777216}'
}
def infer_header_and_data_huge
c_infer_header_and_data_huge() {
  # the export announces 1x16777216x16777216 inputs and the test data 65536 such images
  need export || return
  qsx header "$W/fx/model.qsx" "$C/m.qsx" 'h["input"] = {"channels": 1, "height": 16777216, "width": 16777216}'
  mkdir -p "$C/d"
  idx_images "$C/d/t10k-images-idx3-ubyte" 0 16777216 16777216 0x803 65536
  idx_labels "$C/d/t10k-labels-idx1-ubyte" 65536
  expect 2 'm\.qsx|t10k-images|input|size' infer --model "$C/m.qsx" --data "$C/d"
}
def infer_header_input_negative; c_infer_header_input_negative() { infer_case 'm\.qsx|input|channels' header 'h["input"]["channels"] = -1'; }
def infer_header_num_classes_huge; c_infer_header_num_classes_huge() { infer_case 'm\.qsx|num_classes' header 'h["num_classes"] = 1 << 40'; }
def infer_header_hidden_huge; c_infer_header_hidden_huge() { infer_case 'm\.qsx|hidden|network|record|shape' header 'h["network"]["hidden"] = [1 << 30]'; }
def infer_header_hidden_deep; c_infer_header_hidden_deep() { infer_case 'm\.qsx|hidden|network|layers|record' header 'h["network"]["hidden"] = [8] * 20000'; }
def infer_header_network_missing; c_infer_header_network_missing() { infer_case 'm\.qsx|network' header 'del h["network"]'; }
def infer_header_normalize_bad; c_infer_header_normalize_bad() { infer_case 'm\.qsx|normalize|std|mean' header 'h["normalize"] = {"mean": [0.0], "std": [0.0]}'; }
def infer_header_normalize_len; c_infer_header_normalize_len() { infer_case 'm\.qsx|normalize|std|mean' header 'h["normalize"] = {"mean": [0.0, 0.0, 0.0], "std": [1.0]}'; }
def infer_rec_dims_huge;   c_infer_rec_dims_huge() { infer_case 'm\.qsx' rec0 dim0 0xFFFFFFFF; }
def infer_rec_ndim_zero;   c_infer_rec_ndim_zero() { infer_case 'm\.qsx' rec0 ndim 0; }
def infer_rec_bits_200;    c_infer_rec_bits_200() { infer_case 'm\.qsx' rec0 bits 200; }
def infer_rec_type_bad;    c_infer_rec_type_bad() { infer_case 'm\.qsx' rec0 type 9; }
def infer_rec_n1_huge;     c_infer_rec_n1_huge() { infer_case 'm\.qsx|n1|exponent' rec0 n1 2147483647; }
def infer_rec_namelen_huge; c_infer_rec_namelen_huge() { infer_case 'm\.qsx' rec0 namelen 65535; }
def infer_rec_data_bytes_huge; c_infer_rec_data_bytes_huge() { infer_case 'm\.qsx' rec0 data_bytes 0xFFFFFFFFFFFFFFF0; }
def infer_rec_duplicate;   c_infer_rec_duplicate() { infer_case 'm\.qsx|duplicate' dup0; }
def infer_rec_invalid_codes; c_infer_rec_invalid_codes() { infer_case 'm\.qsx|code' codes 0xAA; }
def infer_data_missing;    c_infer_data_missing() { need export && expect 2 'nope' infer --model "$W/fx/model.qsx" --data "$C/nope"; }
def infer_data_wrong_shape
c_infer_data_wrong_shape() {
  need export || return
  mkdir -p "$C/d"
  idx_images "$C/d/t10k-images-idx3-ubyte" 64 4 4
  idx_labels "$C/d/t10k-labels-idx1-ubyte" 64
  expect 2 't10k|4x4|expects' infer --model "$W/fx/model.qsx" --data "$C/d"
}
def infer_data_labels_oob
c_infer_data_labels_oob() {
  need export || return
  mkdir -p "$C/d"
  cp "$W/fx/idx/t10k-images-idx3-ubyte" "$C/d/"
  idx_labels "$C/d/t10k-labels-idx1-ubyte" 64 9
  expect 2 'label|t10k' infer --model "$W/fx/model.qsx" --data "$C/d"
}
def infer_data_truncated
c_infer_data_truncated() {
  need export || return
  mkdir -p "$C/d"
  cp "$W/fx/idx/t10k-"* "$C/d/"
  truncate_to "$C/d/t10k-images-idx3-ubyte" 1000
  expect 2 't10k-images' infer --model "$W/fx/model.qsx" --data "$C/d"
}
def infer_data_huge_count
c_infer_data_huge_count() {
  need export || return
  mkdir -p "$C/d"
  idx_images "$C/d/t10k-images-idx3-ubyte" 64 8 8 0x803 4294967295
  idx_labels "$C/d/t10k-labels-idx1-ubyte" 64 3 4294967295
  expect 2 't10k' infer --model "$W/fx/model.qsx" --data "$C/d"
}

# ---- schedules (--schedule files and schedule specs) --------------------------------------------
sched_file_case() {  # sched_file_case PATTERN TEXT: train the INQ config with --schedule FILE
  need cfgs || return
  printf '%s' "$2" >"$C/s.json"
  expect 2 "$1" train --config "$W/fx/inq.json" --schedule "$C/s.json" --out "$C/out" --quiet
  require_absent "$C/out/checkpoint.pt"
}
sched_spec_case() {  # sched_spec_case PATTERN PY-SPEC: inq.schedule = spec, train
  cfg_case "as_inq(); c[\"inq\"][\"schedule\"] = $2" "$1"
}
def sched_valid_replay_control; c_sched_valid_replay_control() { need run && expect 0 '' train --config "$W/fx/inq.json" --schedule "$W/fx/run/schedule.json" --out "$C/out" --quiet; }
def sched_file_missing;    c_sched_file_missing() { need cfgs && expect 2 'nope\.json' train --config "$W/fx/inq.json" --schedule "$C/nope.json" --out "$C/out" --quiet; }
def sched_file_dir;        c_sched_file_dir() { need cfgs && expect 2 "$(basename "$C")|directory" train --config "$W/fx/inq.json" --schedule "$C" --out "$C/out" --quiet; }
def sched_file_empty;      c_sched_file_empty() { sched_file_case 's\.json' ''; }
def sched_file_nan;        c_sched_file_nan() { sched_file_case 's\.json' '{"quantity": "fraction", "epochs": 2, "layers": 2, "values": [[0.5, NaN], [1, 1]]}'; }
def sched_file_1e999;      c_sched_file_1e999() { sched_file_case 's\.json' '{"quantity": "fraction", "epochs": 2, "layers": 2, "values": [[0.5, 1e999], [1, 1]]}'; }
def sched_file_wrong_epochs; c_sched_file_wrong_epochs() { sched_file_case 's\.json|epochs' '{"quantity": "fraction", "epochs": 5, "layers": 2, "values": [[0.5, 0.5], [0.6, 0.6], [0.7, 0.7], [0.8, 0.8], [1, 1]]}'; }
def sched_file_wrong_layers; c_sched_file_wrong_layers() { sched_file_case 's\.json|layers' '{"quantity": "fraction", "epochs": 2, "layers": 3, "values": [[0.5, 0.5, 0.5], [1, 1, 1]]}'; }
def sched_file_ragged;     c_sched_file_ragged() { sched_file_case 's\.json|values|layers' '{"quantity": "fraction", "epochs": 2, "layers": 2, "values": [[0.5], [1, 1]]}'; }
def sched_file_rows_huge;  c_sched_file_rows_huge() { sched_file_case 's\.json|epochs|layers' '{"quantity": "fraction", "epochs": 4294967297, "layers": 2, "values": [[0.5, 0.5], [1, 1]]}'; }
def sched_file_decreasing; c_sched_file_decreasing() { sched_file_case 's\.json|decreas' '{"quantity": "fraction", "epochs": 2, "layers": 2, "values": [[0.9, 0.9], [0.5, 1]]}'; }
def sched_file_above_one;  c_sched_file_above_one() { sched_file_case 's\.json|schedule' '{"quantity": "fraction", "epochs": 2, "layers": 2, "values": [[0.5, 0.5], [1.5, 1]]}'; }
def sched_file_not_one;    c_sched_file_not_one() { sched_file_case 's\.json|schedule' '{"quantity": "fraction", "epochs": 2, "layers": 2, "values": [[0.5, 0.5], [0.9, 0.9]]}'; }
def sched_file_noise_for_inq; c_sched_file_noise_for_inq() { sched_file_case 's\.json|noise|fraction|quantity' '{"quantity": "noise", "epochs": 2, "layers": 2, "values": [[0.5, 0.5], [0, 0]]}'; }
def sched_file_deep
c_sched_file_deep() {
  need cfgs || return
  jpy "$C/s.json" <<'EOF'
import sys
n = 100000
open(sys.argv[1], "w").write('{"quantity": "fraction", "values": ' + "[" * n + "]" * n + "}")
EOF
  expect 2 's\.json|nest|deep' train --config "$W/fx/inq.json" --schedule "$C/s.json" --out "$C/out" --quiet
}
def sched_family_bogus;    c_sched_family_bogus() { sched_spec_case 'bogus|family' '{"family": "bogus"}'; }
def sched_family_missing;  c_sched_family_missing() { sched_spec_case 'family' '{"portions": [0.5, 1.0]}'; }
def sched_param_unknown;   c_sched_param_unknown() { sched_spec_case 'alpah' '{"family": "power", "alpah": 2}'; }
def sched_param_range;     c_sched_param_range() { sched_spec_case 'alpha' '{"family": "power", "alpha": -1}'; }
def sched_stagger_too_big; c_sched_stagger_too_big() { sched_spec_case 'delta|stagger|epochs' '{"family": "cosine", "layout": "stagger", "delta": 100}'; }
def sched_steps_decreasing; c_sched_steps_decreasing() { sched_spec_case 'portions|decreas' '{"family": "steps", "portions": [0.9, 0.5, 1.0], "epochs_per_step": 1}'; }
def sched_steps_huge_eps;  c_sched_steps_huge_eps() { sched_spec_case 'epochs_per_step|epochs|schedule' '{"family": "steps", "portions": [0.5, 1.0], "epochs_per_step": 1099511627776}'; }
def sched_table_nan_str;   c_sched_table_nan_str() { sched_spec_case 'values|table' '{"family": "table", "quantity": "fraction", "values": [[0.5, "NaN"], [1, 1]]}'; }
def sched_table_wrong_size; c_sched_table_wrong_size() { sched_spec_case 'values|table|epochs|layers' '{"family": "table", "quantity": "fraction", "values": [[1]]}'; }
def sched_table_huge_rows
c_sched_table_huge_rows() {
  sched_spec_case 'values|table|epochs|layers' '{"family": "table", "quantity": "fraction", "values": [[1, 1]] * 1000000}'
}
def sched_ana_family_for_inq; c_sched_ana_family_for_inq() { sched_spec_case 'ana_window|noise|fraction' '{"family": "ana_window"}'; }
def sched_file_spec_missing_path; c_sched_file_spec_missing_path() { sched_spec_case 'path' '{"family": "file"}'; }
def sched_show_bad_family
c_sched_show_bad_family() {
  need cfgs || return
  expect 2 'bogus|family' schedules show --config "$W/fx/inq.json" --set 'inq.schedule={"family": "bogus"}'
}

# ---- meta-training configs and states ------------------------------------------------------------
meta_cfg_case() {  # meta_cfg_case PATTERN PY-STATEMENTS-on-j: meta-train a modified meta config
  need meta || return
  cp "$W/fx/meta.json" "$C/m.json"
  jedit "$C/m.json" "$2"
  expect 2 "$1" meta-train --config "$C/m.json" --out "$C/out" --quiet
  require_absent "$C/out/meta_state.pt"
}
def meta_config_missing;   c_meta_config_missing() { expect 2 'nope\.json' meta-train --config "$C/nope.json" --out "$C/out"; }
def meta_config_syntax;    c_meta_config_syntax() { printf '{"steps": 1' >"$C/m.json"; expect 2 'm\.json' meta-train --config "$C/m.json" --out "$C/out"; }
def meta_unknown_key;      c_meta_unknown_key() { meta_cfg_case 'stepz' 'j["stepz"] = 1'; }
def meta_steps_huge
c_meta_steps_huge() {
  # the --steps flag allows 1..1000000; the config's "steps" should not run (nearly) forever
  CT=15 meta_cfg_case 'steps' 'j["steps"] = 1 << 40'
}
def meta_threads_huge;     c_meta_threads_huge() { meta_cfg_case 'threads' 'j["threads"] = 4294967297'; }
def meta_estimator_bogus;  c_meta_estimator_bogus() { meta_cfg_case 'estimator|bogus' 'j["estimator"]["name"] = "bogus"'; }
def meta_pairs_zero;       c_meta_pairs_zero() { meta_cfg_case 'pairs' 'j["estimator"]["pairs"] = 0'; }
def meta_pairs_huge;       c_meta_pairs_huge() { meta_cfg_case 'pairs' 'j["estimator"]["pairs"] = 1 << 40'; }
def meta_metagrad_inq;     c_meta_metagrad_inq() { meta_cfg_case 'metagrad|inq|ana' 'j["estimator"] = {"name": "metagrad", "pairs": 1}'; }
def meta_run_float;        c_meta_run_float() { meta_cfg_case 'algorithm|float|run' 'j["run"]["algorithm"] = "float"; del j["run"]["inq"]'; }
def meta_run_invalid;      c_meta_run_invalid() { meta_cfg_case 'epochs' 'j["run"]["train"]["epochs"] = 0'; }
def meta_tasks_empty;      c_meta_tasks_empty() { meta_cfg_case 'tasks|networks' 'j["tasks"]["networks"] = []'; }
def meta_tasks_bad_network; c_meta_tasks_bad_network() { meta_cfg_case 'tasks|network|hidden' 'j["tasks"]["networks"] = [{"type": "mlp", "hidden": [-1]}]'; }
def meta_tasks_huge_network; c_meta_tasks_huge_network() { meta_cfg_case 'tasks|network|hidden' 'j["tasks"]["networks"] = [{"type": "mlp", "hidden": [1000000000]}]'; }
def meta_subset_too_big;   c_meta_subset_too_big() { meta_cfg_case 'subset' 'j["tasks"]["subsets"] = [10000000]'; }
def meta_controller_hidden_huge; c_meta_controller_hidden_huge() { meta_cfg_case 'hidden' 'j["controller"]["hidden"] = 1 << 40'; }
meta_resume_case() {  # meta_resume_case PATTERN MUTATION...: on a copy $C/r of the meta run
  local pat=$1
  shift
  need meta || return
  copy_run meta r
  "$@"
  expect "${META_RESUME_CODES:-2}" "$pat" meta-train --resume --out "$C/r" --steps 2 --quiet
}
def meta_resume_state_flip_start; c_meta_resume_state_flip_start() { meta_resume_case 'meta_state\.pt' flip "$C/r/meta_state.pt" 0 4; }
def meta_resume_state_flip_middle; c_meta_resume_state_flip_middle() { meta_resume_case 'meta_state\.pt' eval 'flip "$C/r/meta_state.pt" $(($(fsize "$C/r/meta_state.pt") / 2)) 4'; }
def meta_resume_state_truncated; c_meta_resume_state_truncated() { meta_resume_case 'meta_state\.pt' eval 'truncate_to "$C/r/meta_state.pt" $(($(fsize "$C/r/meta_state.pt") / 2))'; }
def meta_resume_state_dir; c_meta_resume_state_dir() { meta_resume_case 'meta_state\.pt' eval 'rm "$C/r/meta_state.pt"; mkdir "$C/r/meta_state.pt"'; }
def meta_resume_state_missing; c_meta_resume_state_missing() { meta_resume_case 'meta_state\.pt' rm "$C/r/meta_state.pt"; }
def meta_resume_state_is_checkpoint; c_meta_resume_state_is_checkpoint() { need run && meta_resume_case 'meta_state\.pt' cp "$W/fx/run/checkpoint.pt" "$C/r/meta_state.pt"; }
def meta_resume_config_garbage; c_meta_resume_config_garbage() { meta_resume_case 'meta_config\.json' eval 'printf "{" >"$C/r/meta_config.json"'; }
def meta_resume_config_missing; c_meta_resume_config_missing() { meta_resume_case 'meta_config\.json' rm "$C/r/meta_config.json"; }
def meta_resume_config_invalid; c_meta_resume_config_invalid() { meta_resume_case 'estimator|bogus' jedit "$C/r/meta_config.json" 'j["estimator"]["name"] = "bogus"'; }
def meta_resume_config_hidden_changed; c_meta_resume_config_hidden_changed() { meta_resume_case 'meta_state|meta_config|hidden|parameters|match' jedit "$C/r/meta_config.json" 'j["controller"]["hidden"] = 8'; }
def meta_resume_config_pairs_changed; c_meta_resume_config_pairs_changed() { meta_resume_case 'meta_state|meta_config|pairs|match' jedit "$C/r/meta_config.json" 'j["estimator"]["pairs"] = 3'; }
def meta_resume_config_algorithm_changed
c_meta_resume_config_algorithm_changed() {
  need cfgs || return
  meta_resume_case 'meta_state|meta_config|algorithm|ana|inq|match' jedit "$C/r/meta_config.json" 'import json as J; j["run"] = J.load(open("'"$W"'/fx/ana.json"))'
}
def meta_resume_metrics_garbage; c_meta_resume_metrics_garbage() { META_RESUME_CODES="0 2" meta_resume_case 'meta_metrics' eval 'printf "{not json\n" >"$C/r/meta_metrics.jsonl"'; }
def meta_resume_config_flag; c_meta_resume_config_flag() { need meta && copy_run meta r && expect 2 'resume|config' meta-train --resume --out "$C/r" --config "$W/fx/meta.json"; }

# ---- sweeps, compares, summaries ----------------------------------------------------------------
sweep_grid_case() {  # sweep_grid_case PATTERN GRID-TEXT
  need cfgs || return
  printf '%s' "$2" >"$C/g.json"
  expect "${SWEEP_CODES:-2}" "$1" sweep --config "$W/fx/inq.json" --grid "$C/g.json" --seeds 1 --jobs 1 --out "$C/out" --quiet --no-report
  [[ $RC == 0 ]] || require_absent "$C/out/runs"
}
def sweep_grid_missing;     c_sweep_grid_missing() { need cfgs && expect 2 'nope\.json' sweep --config "$W/fx/inq.json" --grid "$C/nope.json" --out "$C/out" --quiet; }
def sweep_grid_syntax;      c_sweep_grid_syntax() { sweep_grid_case 'g\.json' '{"family": "linear",'; }
def sweep_grid_unknown_key; c_sweep_grid_unknown_key() { sweep_grid_case 'gird' '{"family": "linear", "gird": {"layout": ["overlapped"]}}'; }
def sweep_grid_both;        c_sweep_grid_both() { sweep_grid_case 'grid|random' '{"family": "linear", "grid": {"layout": ["overlapped"]}, "random": {"count": 2, "ranges": {"delta": [0, 1]}}}'; }
def sweep_grid_empty_list;  c_sweep_grid_empty_list() { sweep_grid_case 'layout|empty' '{"family": "linear", "grid": {"layout": []}}'; }
def sweep_grid_bad_family;  c_sweep_grid_bad_family() { sweep_grid_case 'bogus|family' '{"family": "bogus", "grid": {"layout": ["overlapped"]}}'; }
def sweep_grid_bad_param;   c_sweep_grid_bad_param() { SWEEP_CODES="0 2" sweep_grid_case 'alpah' '{"family": "power", "grid": {"alpah": [1, 2]}}'; }
def sweep_grid_dup_values;  c_sweep_grid_dup_values() { SWEEP_CODES="0 2" sweep_grid_case 'layout|duplicate' '{"family": "linear", "grid": {"layout": ["overlapped", "overlapped"]}}'; }
def sweep_grid_dup_key;     c_sweep_grid_dup_key() { sweep_grid_case 'grid|duplicate|g\.json' '{"family": "linear", "grid": {"layout": ["overlapped"]}, "grid": {"layout": ["stagger"]}}'; }
def sweep_grid_huge_product
c_sweep_grid_huge_product() {
  jpy "$C/g0.json" <<'EOF'
import json, sys
g = {"family": "power", "grid": {"alpha": [1 + i / 1000 for i in range(1000)],
                                 "delta": list(range(-500, 500)), "train.epochs": list(range(3, 1003))}}
json.dump(g, open(sys.argv[1], "w"))
EOF
  CT=20 sweep_grid_case 'grid|points|g\.json' "$(cat "$C/g0.json")"
}
def sweep_random_count_huge; c_sweep_random_count_huge() { CT=15 sweep_grid_case 'count' '{"family": "power", "random": {"count": 1099511627776, "seed": 0, "ranges": {"alpha": [0.5, 2]}}}'; }
def sweep_random_bad_range;  c_sweep_random_bad_range() { sweep_grid_case 'alpha|range' '{"family": "power", "random": {"count": 2, "seed": 0, "ranges": {"alpha": [2, 0.5]}}}'; }
def sweep_grid_deep
c_sweep_grid_deep() {
  need cfgs || return
  jpy "$C/g.json" <<'EOF'
import sys
n = 100000
open(sys.argv[1], "w").write('{"family": "power", "grid": {"alpha": ' + "[" * n + "]" * n + "}}")
EOF
  expect 2 'g\.json|nest|deep' sweep --config "$W/fx/inq.json" --grid "$C/g.json" --out "$C/out" --quiet
}
def sweep_float_config;     c_sweep_float_config() { need sweep && expect 2 'float|algorithm' sweep --config "$W/fx/float.json" --grid "$W/fx/grid.json" --out "$C/out" --quiet; }
def sweep_summary_edited
c_sweep_summary_edited() {
  need sweep || return
  copy_run sweep s
  local sum
  sum=$(ls "$C"/s/runs/*/summary.json | head -n 1)
  jedit "$sum" 'j["test_acc"] = "x"'
  rm "$C/s/results.csv"  # else the finished run is not read again
  expect 2 'summary\.json|test_acc' sweep --config "$W/fx/inq.json" --grid "$W/fx/grid.json" --seeds 1 --jobs 1 --out "$C/s" --quiet --no-report
}
def sweep_results_csv_garbage
c_sweep_results_csv_garbage() {
  need sweep || return
  copy_run sweep s
  printf 'point,"unterminated\n' >"$C/s/results.csv"
  cp "$C/s/results.csv" "$C/results.orig"
  expect 2 'results\.csv' sweep --config "$W/fx/inq.json" --grid "$W/fx/grid.json" --seeds 1 --jobs 1 --out "$C/s" --quiet --no-report
  require_file "$C/s/results.csv" "$C/results.orig"
}
def sweep_report_results_garbage
c_sweep_report_results_garbage() {
  need sweep || return
  copy_run sweep s
  printf 'point,"unterminated\n' >"$C/s/results.csv"
  expect 2 'results\.csv' sweep-report --out "$C/s"
}
def sweep_report_results_values_bad
c_sweep_report_results_values_bad() {
  need sweep || return
  copy_run sweep s
  jpy "$C/s/results.csv" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
i = rows[0].index("test_acc")
for r in rows[1:]: r[i] = "x"
csv.writer(open(sys.argv[1], "w"), lineterminator="\n").writerows(rows)
EOF
  expect 2 'results\.csv|test_acc' sweep-report --out "$C/s"
}
def sweep_rerun_other_grid
c_sweep_rerun_other_grid() {
  need sweep || return
  copy_run sweep s
  echo '{"family": "cosine", "grid": {"layout": ["overlapped"]}}' >"$C/g2.json"
  expect 2 'grid' sweep --config "$W/fx/inq.json" --grid "$C/g2.json" --seeds 1 --jobs 1 --out "$C/s" --quiet --no-report
}
def sweep_run_ckpt_flipped
c_sweep_run_ckpt_flipped() {
  # an interrupted run of the sweep (summary removed) whose checkpoint is corrupt
  need sweep || return
  copy_run sweep s
  local r
  r=$(dirname "$(ls "$C"/s/runs/*/summary.json | head -n 1)")
  rm "$r/summary.json" "$C/s/results.csv"
  flip "$r/checkpoint.pt" $(($(fsize "$r/checkpoint.pt") / 2)) 4
  expect 2 'checkpoint\.pt' sweep --config "$W/fx/inq.json" --grid "$W/fx/grid.json" --seeds 1 --jobs 1 --out "$C/s" --quiet --no-report
}
cmp_case() {  # cmp_case PATTERN PY-STATEMENTS-on-j: compare with a modified compare file
  need compare || return
  cp "$W/fx/compare.json" "$C/c.json"
  jedit "$C/c.json" "$2"
  expect 2 "$1" compare --config "$C/c.json" --out "$C/out" --jobs 1 --quiet
  require_absent "$C/out/runs"
}
def cmp_spec_missing;      c_cmp_spec_missing() { expect 2 'nope\.json' compare --config "$C/nope.json" --out "$C/out"; }
def cmp_unknown_key;       c_cmp_unknown_key() { cmp_case 'seedz' 'j["seedz"] = 2'; }
def cmp_seeds_one;         c_cmp_seeds_one() { cmp_case 'seeds' 'j["seeds"] = 1'; }
def cmp_one_schedule;      c_cmp_one_schedule() { cmp_case 'schedules' 'j["schedules"] = j["schedules"][:1]'; }
def cmp_duplicate_schedule_names; c_cmp_duplicate_schedule_names() { cmp_case 'steps|duplicate|name' 'j["schedules"][1]["name"] = "steps"'; }
def cmp_duplicate_target_names; c_cmp_duplicate_target_names() { cmp_case 't8|duplicate|name' 'j["targets"].append(dict(j["targets"][0]))'; }
def cmp_reference_missing; c_cmp_reference_missing() { cmp_case 'reference' 'j["reference"] = "nope"'; }
def cmp_name_path;         c_cmp_name_path() { cmp_case 'name' 'j["schedules"][1]["name"] = "../../escape"'; }
def cmp_both_kinds;        c_cmp_both_kinds() { cmp_case 'controller|schedule' 'j["schedules"][1]["controller"] = "x"'; }
def cmp_controller_missing; c_cmp_controller_missing() { cmp_case 'nope|controller' 'j["schedules"][1] = {"name": "learned", "controller": "'"$C"'/nope"}'; }
def cmp_controller_flipped
c_cmp_controller_flipped() {
  need meta || return
  mkdir -p "$C/m"
  cp "$W/fx/meta/controller.json" "$W/fx/meta/controller.pt" "$C/m/"
  flip "$C/m/controller.pt" $(($(fsize "$C/m/controller.pt") / 2)) 4
  cmp_case 'controller\.pt' 'j["schedules"][1] = {"name": "learned", "controller": "'"$C"'/m"}'
}
def cmp_config_float;      c_cmp_config_float() { cmp_case 'float|algorithm' 'j["config"] = "'"$W"'/fx/float.json"'; }
def cmp_config_missing;    c_cmp_config_missing() { cmp_case 'nope\.json' 'j["config"] = "'"$C"'/nope.json"'; }
def cmp_target_set_bad;    c_cmp_target_set_bad() { cmp_case 'hidden|t8' 'j["targets"][0]["set"] = {"network": {"type": "mlp", "hidden": [-3]}}'; }
def cmp_stagger_does_not_fit; c_cmp_stagger_does_not_fit() { cmp_case 'lin|stagger|delta|t8' 'j["schedules"][1]["schedule"] = {"family": "cosine", "layout": "stagger", "delta": 50}'; }
def cmp_bad_family;        c_cmp_bad_family() { cmp_case 'bogus|family' 'j["schedules"][1]["schedule"] = {"family": "bogus"}'; }
def cmp_summary_edited
c_cmp_summary_edited() {
  need compare || return
  copy_run cmp o
  local sum
  sum=$(find "$C/o/runs" -name summary.json | sort | head -n 1)
  jedit "$sum" 'j["test_acc"] = "x"'
  expect 2 'summary\.json|test_acc' compare --config "$W/fx/compare.json" --out "$C/o" --jobs 1 --quiet
}
def cmp_rerun_other_spec
c_cmp_rerun_other_spec() {
  need compare || return
  copy_run cmp o
  cp "$W/fx/compare.json" "$C/c.json"
  jedit "$C/c.json" 'j["seeds"] = 3'
  expect 2 'compare' compare --config "$C/c.json" --out "$C/o" --jobs 1 --quiet
}
summ_case() {  # summ_case PATTERN PY-STATEMENTS-on-j: summarize a copy with an edited summary
  need run || return
  copy_run run r
  jedit "$C/r/summary.json" "$2"
  expect 2 "$1" summarize "$C/r"
}
def summarize_test_acc_string; c_summarize_test_acc_string() { summ_case 'summary\.json|test_acc' 'j["test_acc"] = "x"'; }
def summarize_test_acc_missing; c_summarize_test_acc_missing() { summ_case 'summary\.json|test_acc' 'del j["test_acc"]'; }
def summarize_on_grid_string; c_summarize_on_grid_string() { summ_case 'summary\.json|on_grid' 'j["on_grid"] = "yes"'; }
def summarize_summary_garbage; c_summarize_summary_garbage() { summ_case 'summary\.json' 'j = "{\"test_acc\": 0.5,"'; }
def summarize_summary_missing; c_summarize_summary_missing() { need run && copy_run run r && rm "$C/r/summary.json" && expect 2 'summary\.json' summarize "$C/r"; }
def summarize_one_good_one_bad
c_summarize_one_good_one_bad() {
  need run || return
  copy_run run r
  jedit "$C/r/summary.json" 'j["val_acc"] = None'
  expect 2 'summary\.json|val_acc' summarize "$W/fx/run" "$C/r"
}

# ---- output directories that are not qsched's ---------------------------------------------------
own_case() {  # own_case ARGS...: $C/f is foreign; qsched must refuse (2) and keep keep.txt
  foreign_dir "$C/f"
  cp "$C/f/keep.txt" "$C/keep.orig"
  expect 2 "$(basename "$C")/f|not qsched|force" "$@"
  require_file "$C/f/keep.txt" "$C/keep.orig"
  require_absent "$C/f/.qsched-run"
}
def own_train;       c_own_train() { need cfgs && own_case train --config "$W/fx/float.json" --out "$C/f" --quiet; }
def own_apply;       c_own_apply() { need meta && own_case apply --controller "$W/fx/meta" --config "$W/fx/inq.json" --out "$C/f" --quiet; }
def own_meta_train;  c_own_meta_train() { need meta && own_case meta-train --config "$W/fx/meta.json" --out "$C/f" --quiet; }
def own_sweep;       c_own_sweep() { need sweep && own_case sweep --config "$W/fx/inq.json" --grid "$W/fx/grid.json" --seeds 1 --jobs 1 --out "$C/f" --quiet --no-report; }
def own_compare;     c_own_compare() { need compare && own_case compare --config "$W/fx/compare.json" --out "$C/f" --jobs 1 --quiet; }
def own_demo;        c_own_demo() { CT=30 own_case demo --out "$C/f" --epochs 1 --subset 1000 --meta-steps 0; }
def own_train_resume; c_own_train_resume() { foreign_dir "$C/f"; expect 2 "$(basename "$C")/f|qsched|config|checkpoint" train --resume --out "$C/f" --quiet; require_file "$C/f/keep.txt"; }
def own_train_other_kind
c_own_train_other_kind() {
  need sweep cfgs || return
  copy_run sweep s
  expect 2 "$(basename "$C")/s|sweep|kind" train --config "$W/fx/float.json" --out "$C/s" --quiet
  require_file "$C/s/results.csv"
}
def own_apply_into_train_run
c_own_apply_into_train_run() {
  need run meta || return
  copy_run run r
  cp "$C/r/checkpoint.pt" "$C/ckpt.orig"
  expect 2 "$(basename "$C")/r|train|kind|already" apply --controller "$W/fx/meta" --config "$W/fx/inq.json" --out "$C/r" --quiet
  require_file "$C/r/checkpoint.pt" "$C/ckpt.orig"
}
def own_meta_into_train_run
c_own_meta_into_train_run() {
  need run meta || return
  copy_run run r
  expect 2 "$(basename "$C")/r|train|kind" meta-train --config "$W/fx/meta.json" --out "$C/r" --quiet
  require_file "$C/r/checkpoint.pt"
}
def own_marker_garbage
c_own_marker_garbage() {
  need cfgs || return
  mkdir "$C/f"
  printf 'garbage' >"$C/f/.qsched-run"
  expect 2 'qsched-run' train --config "$W/fx/float.json" --out "$C/f" --quiet
}
def own_marker_deep
c_own_marker_deep() {
  need cfgs || return
  mkdir "$C/f"
  jpy "$C/f/.qsched-run" <<'EOF'
import sys
n = 100000
open(sys.argv[1], "w").write("[" * n + "]" * n)
EOF
  expect 2 'qsched-run' train --config "$W/fx/float.json" --out "$C/f" --quiet
}
def own_out_is_file
c_own_out_is_file() {
  need cfgs || return
  echo x >"$C/f"
  expect "2 4" "$(basename "$C")/f" train --config "$W/fx/float.json" --out "$C/f" --quiet
  require_file "$C/f"
}
def own_out_under_file; c_own_out_under_file() { need cfgs && echo x >"$C/f" && expect "2 4" "$(basename "$C")/f" train --config "$W/fx/float.json" --out "$C/f/sub" --quiet; }
def own_force_control
c_own_force_control() {
  # --force writes next to the foreign file and leaves it alone (exit 0)
  need cfgs || return
  foreign_dir "$C/f"
  cp "$C/f/keep.txt" "$C/keep.orig"
  expect 0 '' train --config "$W/fx/float.json" --out "$C/f" --quiet --force
  require_file "$C/f/keep.txt" "$C/keep.orig"
}

# ---- I/O failures (exit 4) ----------------------------------------------------------------------
def io_file_size_limit_train
c_io_file_size_limit_train() {
  # files larger than 2 KiB (bash: 1024-byte blocks) cannot be written (EFBIG; SIGXFSZ must not kill qsched)
  need cfgs || return
  ULIMIT_F=2 expect 4 'config\.json|checkpoint|metrics|summary|schedule|File too large|'"$(basename "$C")" train --config "$W/fx/inq.json" --out "$C/out" --quiet
}
def io_file_size_limit_export
c_io_file_size_limit_export() {
  need run || return
  ULIMIT_F=0 expect 4 'm\.qsx|File too large' export --run "$W/fx/run" --out "$C/m.qsx"
}
def io_file_size_limit_meta
c_io_file_size_limit_meta() {
  need meta || return
  ULIMIT_F=2 expect 4 'meta|controller|File too large|'"$(basename "$C")" meta-train --config "$W/fx/meta.json" --out "$C/out" --quiet
}

# ==============================================================================================
# Driver.

if ((LIST)); then
  printf '%s\n' "${CASES[@]}"
  exit 0
fi
if [[ ! -x $BIN ]]; then
  echo "bad_input_corpus: qsched binary '$BIN' not found (build it, or pass its path)" >&2
  exit 2
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

W=$(mktemp -d "${TMPDIR:-/tmp}/qsched-corpus.XXXXXX")
cleanup() {
  if [[ ${CORPUS_KEEP:-0} == 1 ]]; then echo "work directory kept: $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$W" || exit 1
export OMP_NUM_THREADS=1

JOBS=${CORPUS_JOBS:-2}
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || JOBS=1
SELECTED=()
for name in "${CASES[@]}"; do
  if [[ -n $FILTER ]] && ! [[ $name =~ $FILTER ]]; then continue; fi
  SELECTED+=("$name")
done
((${#SELECTED[@]} < 2)) && JOBS=1
mkdir -p "$W/results" "$W/cases"
START=$SECONDS
if ((JOBS > 1)); then
  # parallel workers must not build a fixture twice at the same time: build them all first
  for f in cfgs run floatrun export meta apply sweep compare; do fixture "$f"; done
fi

# run_case NAME INDEX: runs one case, prints its block in one write, records the outcome.
run_case() {
  local name=$1 idx=$2 t0 block
  C=$W/cases/$name
  mkdir -p "$C"
  RESULT=PASS CATEGORY="" DETAIL="" CMDLINE="" ERRFIRST="" ULIMIT_F="" CT="" RC=""
  t0=$SECONDS
  "c_$name"
  ULIMIT_F="" CT=""
  if [[ $RESULT == PASS ]]; then
    block=$(printf 'PASS %-44s %3ss exit %s' "$name" $((SECONDS - t0)) "${RC:-}")
  else
    block=$(printf 'FAIL %-44s %3ss [%s] %s\n       command: %s' "$name" $((SECONDS - t0)) \
      "$CATEGORY" "$DETAIL" "$CMDLINE")
    if [[ -n $ERRFIRST ]]; then block+=$'\n'$(printf '%s\n' "$ERRFIRST" | sed 's/^/       stderr: /'); fi
  fi
  printf '%s\n' "$block"
  printf '%s\t%s\t%s\n' "$RESULT" "${CATEGORY:--}" "$name" >"$W/results/$(printf '%05d' "$idx")"
  rm -rf "$C"  # keep the work directory small
}

i=0
for name in "${SELECTED[@]}"; do
  i=$((i + 1))
  if ((JOBS > 1)); then
    while (($(jobs -rp | wc -l) >= JOBS)); do wait -n; done
    run_case "$name" "$i" &
  else
    run_case "$name" "$i"
  fi
done
wait

declare -A COUNT=()
CATS=(crash hang sanitizer exit1 accepted wrong-code multiline unnamed damaged fixture)
for k in "${CATS[@]}"; do COUNT[$k]=0; done
N=0 P=0 F=0
FAILED_LINES=()
for f in "$W"/results/*; do
  [[ -e $f ]] || continue
  IFS=$'\t' read -r res cat name <"$f"
  N=$((N + 1))
  if [[ $res == PASS ]]; then
    P=$((P + 1))
  else
    F=$((F + 1))
    COUNT[$cat]=$((${COUNT[$cat]:-0} + 1))
    FAILED_LINES+=("$name [$cat]")
  fi
done

echo
echo "corpus: $N cases, $P passed, $F failed ($((SECONDS - START)) s, $JOBS jobs)"
line=""
for k in "${CATS[@]}"; do line+="$k=${COUNT[$k]} "; done
echo "failures by category: $line"
if ((F > 0)); then
  printf '  %s\n' "${FAILED_LINES[@]}"
  exit 1
fi
exit 0
