"""Safetensors fixtures for packages/flux/test/weights/safetensors*.test.ts and dtypes.parity.test.ts.

Run from the repo root:  test/reference/.venv/bin/python test/reference/gen_safetensors.py

Writes (deterministic) to test/fixtures/safetensors/:
  dtype_tables.safetensors   torch's own conversion of EVERY bit pattern to float32:
                               bf16  [65536] F32 = arange(65536).to(int16).view(bfloat16).float()
                               f16   [65536] F32 = ... .view(float16).float()
                               f8_e4m3 [256] F32 = arange(256).to(uint8).view(float8_e4m3fn).float()
                               f8_e5m2 [256] F32 = ... .view(float8_e5m2).float()
  python_written.safetensors safetensors.torch.save_file of one tensor per dtype (+ scalar, empty)
  python_written.json        for each tensor: dtype, shape, raw bytes (hex) and expected values
                             (floats as float32 values, NaN/Infinity as strings; 64-bit ints as strings)
  ts_written.safetensors     the same tensors written by the TypeScript writer (run through tsx from this
                             script); this script then asserts the Python reader loads it bit-exactly and
                             that it is byte-identical to python_written.safetensors.
"""

import json
import math
import os
import subprocess
import sys

import safetensors
import torch
import safetensors.torch
from safetensors.torch import load_file, save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "test", "fixtures", "safetensors")

DTYPE_NAMES = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.float8_e5m2: "F8_E5M2",
    torch.float8_e4m3fn: "F8_E4M3", torch.int16: "I16", torch.uint16: "U16", torch.float16: "F16",
    torch.bfloat16: "BF16", torch.int32: "I32", torch.uint32: "U32", torch.float32: "F32",
    torch.float64: "F64", torch.int64: "I64", torch.uint64: "U64",
}


def bits(n_bits, values):
    """A tensor of the given raw bit patterns (for viewing as a float dtype)."""
    dt = {8: torch.uint8, 16: torch.int16, 32: torch.int32, 64: torch.int64}[n_bits]
    wrapped = [v - (1 << n_bits) if (n_bits > 8 and v >= 1 << (n_bits - 1)) else v for v in values]
    return torch.tensor(wrapped, dtype=dt)


def dtype_tables():
    all16 = torch.arange(65536, dtype=torch.int32).to(torch.int16)
    all8 = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    return {
        "bf16": all16.view(torch.bfloat16).float(),
        "f16": all16.view(torch.float16).float(),
        "f8_e4m3": all8.view(torch.float8_e4m3fn).float(),
        "f8_e5m2": all8.view(torch.float8_e5m2).float(),
    }


def sample_tensors():
    g = torch.Generator().manual_seed(0)
    t = {}
    t["bool"] = torch.tensor([[True, False, True], [False, False, True]])
    t["u8"] = torch.tensor([0, 1, 127, 128, 255], dtype=torch.uint8)
    t["i8"] = torch.tensor([-128, -1, 0, 1, 127], dtype=torch.int8)
    # every F8 bit pattern, as a 16x16 matrix
    t["f8_e5m2"] = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e5m2).reshape(16, 16)
    t["f8_e4m3"] = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e4m3fn).reshape(16, 16)
    t["i16"] = torch.tensor([-32768, -2, 0, 3, 32767], dtype=torch.int16)
    t["u16"] = torch.tensor([0, 1, 32768, 65535], dtype=torch.int32).to(torch.uint16)
    # specials: +-0, 1, -2, min subnormal, max subnormal, min normal, max, inf, -inf, quiet NaN, NaN w/ payload
    t["f16"] = bits(16, [0x0000, 0x8000, 0x3C00, 0xC000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7C00, 0xFC00, 0x7E00, 0x7C01]).view(torch.float16)
    t["bf16"] = torch.cat([
        bits(16, [0x0000, 0x8000, 0x3F80, 0xC000, 0x0001, 0x007F, 0x0080, 0x7F7F, 0x7F80, 0xFF80, 0x7FC0, 0xFFC1]).view(torch.bfloat16),
        torch.randn(20, generator=g).to(torch.bfloat16),
    ]).reshape(2, 16)
    t["i32"] = torch.tensor([-(2**31), -1, 0, 1, 2**31 - 1], dtype=torch.int32)
    t["u32"] = torch.tensor([0, 1, 2**31, 2**32 - 1], dtype=torch.int64).to(torch.uint32)
    t["f32"] = torch.cat([
        torch.tensor([0.0, -0.0, 1.0, -2.5, math.inf, -math.inf, math.nan, 1e-45, 3.4028234663852886e38], dtype=torch.float32),
        torch.randn(3, 5, generator=g).reshape(-1),
    ]).reshape(4, 6)
    t["f64"] = torch.tensor([0.1, -0.0, 1e300, 5e-324, math.pi, 1 / 3], dtype=torch.float64)
    t["i64"] = torch.tensor([-(2**63), -1, 0, 2**53 + 1, 2**63 - 1], dtype=torch.int64)
    t["u64"] = torch.tensor([0, 1, 2**53 + 1, -(2**63)], dtype=torch.int64).view(torch.uint64)  # last is 2^63
    t["scalar"] = torch.tensor(7.25, dtype=torch.float32)  # shape []
    t["empty"] = torch.zeros(0, 3, dtype=torch.float16)  # zero elements
    t["odd.name/with \"quotes\" and ünïcode"] = torch.tensor([1.5], dtype=torch.float32)
    return t


def expected_values(x):
    if x.dtype.is_floating_point:
        out = []
        for v in x.float().reshape(-1).tolist():
            if math.isnan(v):
                out.append("NaN")
            elif math.isinf(v):
                out.append("Infinity" if v > 0 else "-Infinity")
            else:
                out.append(v)
        return out
    if x.dtype == torch.bool:
        return [int(v) for v in x.reshape(-1).tolist()]
    if x.dtype in (torch.int64, torch.uint64):
        raw = x.view(torch.int64).reshape(-1).tolist()
        if x.dtype == torch.uint64:
            raw = [v + (1 << 64) if v < 0 else v for v in raw]
        return [str(v) for v in raw]
    if x.dtype in (torch.uint16, torch.uint32):
        return [int(v) for v in x.to(torch.int64).reshape(-1).tolist()]
    return [int(v) for v in x.reshape(-1).tolist()]


def raw_hex(x):
    return x.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes().hex()


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and raw_hex(a) == raw_hex(b)


TS_WRITER = r"""
const { readFileSync } = await import('node:fs');
const st = await import(process.argv[1]);
const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const tensors = {};
for (const [name, t] of Object.entries(spec.tensors)) {
  tensors[name] = { dtype: t.dtype, shape: t.shape, data: Uint8Array.from(Buffer.from(t.hex, 'hex')) };
}
await st.writeSafetensors(process.argv[3], tensors, spec.metadata);
"""


# ---- differential corpus: mutated files and the reference parser's verdict on each ----

DIFF_DTYPES = [torch.bool, torch.uint8, torch.int8, torch.float8_e5m2, torch.float8_e4m3fn, torch.int16,
               torch.float16, torch.bfloat16, torch.int32, torch.float32, torch.float64, torch.int64]


def random_valid_file(rng):
    tensors = {}
    for i in range(rng.randrange(4)):
        dt = rng.choice(DIFF_DTYPES)
        shape = [rng.randrange(4) for _ in range(rng.randrange(3))]
        n = math.prod(shape)
        raw = torch.tensor([rng.randrange(256) for _ in range(n * torch.empty(0, dtype=dt).element_size())], dtype=torch.uint8)
        tensors[f"t{i}"] = raw.view(dt).reshape(shape) if n > 0 else torch.zeros(shape, dtype=dt)
    meta = {"format": "pt"} if rng.random() < 0.5 else None
    return safetensors.torch.save(tensors, metadata=meta)


def with_header(buf, text, data_delta=0):
    n = int.from_bytes(buf[:8], "little")
    data = buf[8 + n:]
    data = data[:len(data) + data_delta] if data_delta < 0 else data + bytes(data_delta)
    j = text.encode("utf-8")
    return len(j).to_bytes(8, "little") + j + data


def mutate(rng, buf):
    n = int.from_bytes(buf[:8], "little")
    header = json.loads(buf[8:8 + n])
    names = [k for k in header if k != "__metadata__"]
    kind = rng.randrange(16)
    if kind < 9 and names:
        t = header[rng.choice(names)]
        if kind == 0:
            t["dtype"] = rng.choice(["F32", "BF16", "U8", "I64", "f32", "", "X"])
        elif kind == 1:
            t["shape"] = [rng.choice([0, 1, 2, 3, 2**40, 2**31]) for _ in range(rng.randrange(4))]
        elif kind == 2:
            t["data_offsets"] = [t["data_offsets"][0] + rng.randrange(-3, 4), t["data_offsets"][1] + rng.randrange(-3, 4)]
        elif kind == 3:
            t["data_offsets"] = t["data_offsets"][: rng.randrange(3)]
        elif kind == 4:
            t["shape"] = rng.choice([1.5, "2", None, [1.0], [-1], [True]])
        elif kind == 5:
            del t[rng.choice(["dtype", "shape", "data_offsets"])]
        elif kind == 6 and len(names) > 1:
            t["data_offsets"] = list(header[rng.choice(names)]["data_offsets"])
        elif kind == 7:
            t["data_offsets"] = rng.choice([[0.5, 1], [-1, 0], [0, 2**40], "x", None])
        else:
            header[rng.choice(names)] = rng.choice([None, 1, "x", [], {}])
        return with_header(buf, json.dumps(header), rng.choice([0, 0, 0, -1, 1, 4]))
    if kind == 9:
        header["__metadata__"] = rng.choice([None, 5, [], {"a": 1}, {"a": "b"}, {"a": None}])
        return with_header(buf, json.dumps(header))
    if kind == 10 and names:
        del header[rng.choice(names)]
        return with_header(buf, json.dumps(header))
    if kind == 11:
        return buf[: rng.randrange(len(buf) + 1)]
    if kind == 12:
        m = rng.choice([2**64 - 1, 2**63, 100_000_001, n + 1, max(0, n - 1), 0, len(buf)])
        return m.to_bytes(8, "little") + buf[8:]
    if kind == 13 and n > 0:
        b = bytearray(buf)
        for _ in range(rng.randrange(1, 4)):
            b[8 + rng.randrange(n)] = rng.randrange(256)
        return bytes(b)
    if kind == 14:
        text = json.dumps(header)
        at = rng.randrange(len(text) + 1)
        return with_header(buf, text[:at] + rng.choice(["{", "}", ",", ":", '"', " ", "1", "-", "."]) + text[at:])
    return buf + bytes(rng.randrange(1, 5))


def reference_verdict(buf):
    try:
        out = safetensors.deserialize(buf)
        return {"ok": True, "names": sorted(name for name, _ in out)}
    except Exception as e:  # SafetensorError for every rejection seen
        # Only the type: the reference's message can name a different tensor from run to run (it
        # walks a Rust HashMap), which would make this fixture nondeterministic.
        return {"ok": False, "error": type(e).__name__}


def differential_corpus(count=800, seed=1234):
    import base64
    import random
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        buf = mutate(rng, random_valid_file(rng))
        cases.append({"b64": base64.b64encode(buf).decode("ascii"), **reference_verdict(buf)})
    return cases


TS_SPARSE = r"""
const st = await import(process.argv[1]);
await st.writeSparseSafetensors(process.argv[2], [
  { name: 'huge', dtype: 'BF16', shape: [3, 2 ** 30] },
  { name: 'tail', dtype: 'BF16', shape: [4, 2] },
  { name: 'first', dtype: 'F32', shape: [5] },
], { format: 'pt' });
"""


def main():
    os.makedirs(OUT, exist_ok=True)
    print(f"torch {torch.__version__}, safetensors {safetensors.__version__}")

    tables = dtype_tables()
    save_file(tables, os.path.join(OUT, "dtype_tables.safetensors"), metadata={"generator": "gen_safetensors.py"})

    tensors = sample_tensors()
    metadata = {"format": "pt"}  # one key: the reference serialises metadata from a HashMap (unordered)
    py_path = os.path.join(OUT, "python_written.safetensors")
    save_file(tensors, py_path, metadata=metadata)
    spec = {
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "metadata": metadata,
        "tensors": {
            name: {"dtype": DTYPE_NAMES[x.dtype], "shape": list(x.shape), "hex": raw_hex(x), "values": expected_values(x)}
            for name, x in tensors.items()
        },
    }
    json_path = os.path.join(OUT, "python_written.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=1, ensure_ascii=False)
        f.write("\n")

    # The Python reader reads its own file back (sanity) ...
    back = load_file(py_path)
    assert set(back) == set(tensors)
    for name, x in tensors.items():
        assert same_bits(back[name], x), name

    # ... and the file the TypeScript writer makes from the same spec.
    ts_path = os.path.join(OUT, "ts_written.safetensors")
    st_module = os.path.join(ROOT, "packages", "flux", "src", "weights", "safetensors.ts")
    subprocess.run(
        ["node", "--import", "tsx", "--input-type=module", "-e", TS_WRITER, st_module, json_path, ts_path],
        cwd=ROOT, check=True,
    )
    ts_back = load_file(ts_path)
    assert set(ts_back) == set(tensors), sorted(set(ts_back) ^ set(tensors))
    for name, x in tensors.items():
        assert same_bits(ts_back[name], x), f"TS-written tensor {name!r} differs"
    with safetensors.safe_open(ts_path, "pt") as f:
        assert f.metadata() == metadata, f.metadata()
    with open(ts_path, "rb") as a, open(py_path, "rb") as b:
        assert a.read() == b.read(), "TS-written file is not byte-identical to the Python-written one"
    print(f"python safetensors read the TS-written file: {len(ts_back)} tensors bit-exact, file byte-identical")

    # A >4 GiB sparse header-only file from writeSparseSafetensors is valid for the reference too.
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        sparse = os.path.join(tmp, "sparse.safetensors")
        subprocess.run(
            ["node", "--import", "tsx", "--input-type=module", "-e", TS_SPARSE, st_module, sparse],
            cwd=ROOT, check=True,
        )
        with safetensors.safe_open(sparse, "pt") as f:
            assert sorted(f.keys()) == ["first", "huge", "tail"], f.keys()
            tail = f.get_tensor("tail")
            assert tail.dtype == torch.bfloat16 and list(tail.shape) == [4, 2] and bool((tail == 0).all())
            assert list(f.get_slice("huge").get_shape()) == [3, 2**30]
        print(f"python safetensors read the TS sparse file ({os.path.getsize(sparse)} bytes, tensor past 2^32)")

    cases = differential_corpus()
    with open(os.path.join(OUT, "differential.json"), "w", encoding="utf-8") as f:
        json.dump({"note": "mutated files and whether reference safetensors.deserialize accepts them", "safetensors": safetensors.__version__, "cases": cases}, f, separators=(",", ":"))
        f.write("\n")
    ok = sum(c["ok"] for c in cases)
    print(f"differential corpus: {len(cases)} cases, {ok} accepted by the reference, {len(cases) - ok} rejected")

    for name in sorted(os.listdir(OUT)):
        print(f"  {name}: {os.path.getsize(os.path.join(OUT, name))} bytes")


if __name__ == "__main__":
    sys.exit(main())
