#!/bin/sh
# Accuracy of codegen/mathlib.c's float32 functions: the compiled code against
# the interpreter in float64 (libm), in units in the last place of the float32
# result, over exp's whole range and log's inputs from 1e-35 to 1e35.
set -eu
cd "$(dirname "$0")/../.."
T=$(mktemp -d /tmp/jemc_ulp.XXXXXX)
trap 'rm -rf "$T"' EXIT
/usr/bin/python3 - "$T" <<'PY'
import sys; sys.path.insert(0, 'tests/parity')
import torch, torch_ref
x = torch.linspace(-87, 88, 200000)
y = torch.exp(torch.linspace(-80, 80, 200000))
torch_ref.write_safetensors(sys.argv[1] + '/in.safetensors', [('x', x), ('y', y)])
PY
build/jemc run bench/mathlib/accuracy.graph p --in "$T/in.safetensors" --out "$T/cpu.safetensors" --target cpu
build/jemc run bench/mathlib/accuracy.graph p --in "$T/in.safetensors" --out "$T/f64.safetensors" --precision f64
/usr/bin/python3 - "$T" <<'PY'
import json, struct, sys, numpy as np
def rd(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype={'F32': np.float32, 'F64': np.float64}[v['dtype']])
    return out
a, r = rd(sys.argv[1] + '/cpu.safetensors'), rd(sys.argv[1] + '/f64.safetensors')
for k in a:
    g, w = a[k].astype(np.float64), r[k]
    fin = np.isfinite(w) & (np.abs(w) > 1e-37)
    ulp = np.spacing(np.abs(w[fin]).astype(np.float32)).astype(np.float64)
    print('%-3s max error %.2f ulp; non-finite mismatches %d' % (k, (np.abs(g[fin] - w[fin]) / ulp).max(),
          int(np.sum(np.isfinite(g) != np.isfinite(w)))))
PY
