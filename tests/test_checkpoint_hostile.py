"""Checkpoints that are hostile, not just damaged: a FIFO, a zip bomb, a header declaring
a trillion elements, JSON nested 100,000 deep, a malformed index; and writers killed with
SIGKILL in the middle of a save.

Every one is refused with a CheckpointError (a ValueError) naming the file and the entry,
quickly, without reading the data it lies about, and with the optimizer unchanged.
"""

from __future__ import annotations

import copy
import io
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import adaopt
from adaopt import CheckpointError, checkpoint

# ---------------------------------------------------------------------- helpers


def params():
    return [np.linspace(-1, 1, 3), np.arange(4.0).reshape(2, 2)]


SHAPES = {"0": (3,), "1": (2, 2)}


def trained(steps=2, **kw):
    ps = params()
    opt = adaopt.Adam(ps, lr=0.01, amsgrad=True, **kw)
    for i in range(steps):
        opt.step([p + 0.1 * (i + 1) for p in ps])
    return opt, ps


@pytest.fixture
def good(tmp_path):
    """(opt, params, path of its checkpoint)."""
    opt, ps = trained()
    path = tmp_path / "good.npz"
    opt.save(path)
    return opt, ps, path


def _groups(sd):
    """Groups with lists as tuples: a raw checkpoint.load gives JSON's lists (betas)."""
    return [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
            for g in sd["param_groups"]]


def assert_same(sd_a, sd_b):
    assert _groups(sd_a) == _groups(sd_b)
    assert set(sd_a["state"]) == set(sd_b["state"])
    for name, st in sd_a["state"].items():
        assert set(st) == set(sd_b["state"][name])
        for k, v in st.items():
            if k == "step":
                assert v == sd_b["state"][name][k]
            else:
                assert v.dtype == sd_b["state"][name][k].dtype
                assert np.array_equal(v, sd_b["state"][name][k])


def refused(path, *fragments, opt_and_params=None, expect=None, max_mb=32, max_s=5.0):
    """load(path) raises CheckpointError naming path and fragments, fast and without reading
    much; through Optimizer.load as well, which must change nothing."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(CheckpointError) as info:
            checkpoint.load(path) if expect is None else checkpoint.load(path, expect=expect)
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(path) in msg, msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    assert peak < max_mb * 2**20, f"load allocated {peak / 2**20:.0f} MiB before refusing: {msg}"
    assert elapsed < max_s, f"load took {elapsed:.1f} s before refusing: {msg}"
    assert len(msg) < 1000, msg
    if opt_and_params is not None:
        opt, ps = opt_and_params
        before = copy.deepcopy(opt.state_dict()), [p.copy() for p in ps]
        with pytest.raises(CheckpointError):
            opt.load(path)
        assert_same(opt.state_dict(), before[0])
        for p, q in zip(ps, before[1]):
            assert np.array_equal(p, q)
    return msg


def members_of(path):
    """{name: raw bytes of the member} of an .npz, in order."""
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def write_zip(path, members):
    """A zip written by hand, so that it can lie. ``members``: a list of dicts with name,
    data (the bytes stored), method (0 stored, 8 deflated), size (the uncompressed size it
    declares), crc; sizes and crc default to the honest ones of stored data."""
    out = io.BytesIO()
    central = []
    for m in members:
        name = m["name"].encode()
        data = m["data"]
        method = m.get("method", 0)
        size = m.get("size", len(data))
        csize = m.get("csize", len(data))
        crc = m.get("crc", zlib.crc32(data) if method == 0 else 0)
        offset = out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, csize, size,
                              len(name), 0))
        out.write(name)
        out.write(data)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc,
                                   csize, size, len(name), 0, 0, 0, 0, 0, offset) + name)
    start = out.tell()
    cd = b"".join(central)
    out.write(cd)
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(cd),
                          start, 0))
    path.write_bytes(out.getvalue())
    return path


def npy_header(shape, descr="<f8", fortran=False):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fortran,
                                               "shape": tuple(shape)})
    return buf.getvalue()


def npy(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def replaced(good_path, bad_path, entry, **member):
    """The good checkpoint with member ``entry`` replaced by ``member`` (a write_zip dict)."""
    out = []
    for name, data in members_of(good_path).items():
        out.append({"name": name, "data": data, **(member if name == entry else {})})
    return write_zip(bad_path, out)


def meta_of(path):
    return json.loads(np.load(path)["__meta__"].tobytes().decode())


def with_meta(good_path, bad_path, meta_bytes):
    """The good checkpoint's arrays with ``meta_bytes`` as __meta__."""
    out = []
    for name, data in members_of(good_path).items():
        if name == "__meta__.npy":
            data = npy(np.frombuffer(meta_bytes, dtype=np.uint8))
        out.append({"name": name, "data": data})
    return write_zip(bad_path, out)


def zero_bomb(header, gib=2):
    """A raw deflate stream of ``header`` then ``gib`` GiB of zeros, about 2 MB, made
    without deflating 2 GiB: after a full flush the compressor has no history, so each
    1 MiB of zeros deflates to the very same bytes."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    mib = bytes(2**20)
    block = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
    assert block == again
    return head + block * (gib * 1024) + c.flush(), len(header) + gib * 2**30


# ---------------------------------------------------------------------- 1. not a regular file


def _load_in_thread(path, timeout=5.0):
    box = {}

    def run():
        try:
            checkpoint.load(path)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["exc"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    return t, box


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "ckpt.npz"
    os.mkfifo(fifo)
    t, box = _load_in_thread(fifo)
    if t.is_alive():  # unblock the reader so the thread ends, then fail
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(5)
        pytest.fail("checkpoint.load blocked on a FIFO")
    assert isinstance(box.get("exc"), CheckpointError), box
    msg = str(box["exc"])
    assert str(fifo) in msg and "regular file" in msg, msg


def test_symlink_to_a_fifo_is_refused_and_to_a_file_loads(tmp_path, good):
    opt, ps, path = good
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "link.npz"
    link.symlink_to(fifo)
    t, box = _load_in_thread(link)
    if t.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(5)
        pytest.fail("checkpoint.load blocked on a symlink to a FIFO")
    assert isinstance(box.get("exc"), CheckpointError), box
    ok = tmp_path / "ok.npz"
    ok.symlink_to(path)
    assert_same(checkpoint.load(ok), opt.state_dict())


@pytest.mark.parametrize("kind", ["directory", "devnull"])
def test_other_non_files_are_refused(tmp_path, good, kind):
    opt, ps, _ = good
    path = tmp_path / "dir.npz" if kind == "directory" else os.devnull
    if kind == "directory":
        path.mkdir()
    refused(path, "regular file", opt_and_params=(opt, ps))


def test_a_missing_file_is_still_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "nope.npz")


# ---------------------------------------------------------------------- 2. sizes declared, not read


def test_zip_bomb_is_refused_before_it_inflates(good, tmp_path):
    """2 MB on disk, 2 GiB inflated: it used to inflate fully (12 s, 2.1 GB) first."""
    opt, ps, path = good
    data, size = zero_bomb(npy_header((2**28,)))
    bomb = replaced(path, tmp_path / "bomb.npz", "a0.npy", data=data, method=8, size=size,
                    csize=len(data), crc=0)
    assert bomb.stat().st_size < 4 * 2**20
    msg = refused(bomb, "a0", opt_and_params=(opt, ps))
    assert "inflate" in msg or "compressed" in msg, msg
    # a caller that knows the parameters refuses it on its declared shape
    msg = refused(bomb, "a0", "(268435456,)", "(3,)", expect=SHAPES)


@pytest.mark.parametrize("count", [10**9, 10**12])
@pytest.mark.parametrize("method", [0, 8])
def test_header_declaring_a_huge_array_is_refused_before_allocating(good, tmp_path, count, method):
    """A small member whose .npy header declares 1e9 or 1e12 elements: numpy allocated
    them (MemoryError under a memory limit) before finding the data missing."""
    opt, ps, path = good
    raw = npy_header((count,)) + bytes(24)
    member = {"data": raw}
    if method == 8:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        data = c.compress(raw) + c.flush()
        member = {"data": data, "method": 8, "size": len(raw), "csize": len(data),
                  "crc": zlib.crc32(raw)}
    bad = replaced(path, tmp_path / "huge.npz", "a1.npy", **member)
    msg = refused(bad, "a1", str(count), opt_and_params=(opt, ps))
    refused(bad, "a1", "(3,)", expect=SHAPES)


def test_stored_member_that_claims_more_bytes_than_the_file_has(good, tmp_path):
    opt, ps, path = good
    raw = npy_header((2**28,)) + bytes(64)
    bad = replaced(path, tmp_path / "liar.npz", "a0.npy", data=raw, size=2**31 + 128,
                   csize=2**31 + 128)
    refused(bad, "a0", opt_and_params=(opt, ps))


def test_huge_meta_is_refused_before_reading_it(good, tmp_path):
    opt, ps, path = good
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw_head = npy_header((100 * 2**20,), descr="|u1")
    body = c.compress(raw_head) + c.compress(bytes(100 * 2**20)) + c.flush()
    out = [{"name": n, "data": d} for n, d in members_of(path).items() if n != "__meta__.npy"]
    out.append({"name": "__meta__.npy", "data": body, "method": 8,
                "size": len(raw_head) + 100 * 2**20, "csize": len(body), "crc": 0})
    bad = write_zip(tmp_path / "bigmeta.npz", out)
    refused(bad, "__meta__", opt_and_params=(opt, ps))


@pytest.mark.parametrize("arr", [np.zeros(16, dtype=np.float64), np.zeros((4, 4), dtype=np.uint8),
                                 np.array(["{}"]), np.zeros(3, dtype=[("a", "u1")])],
                         ids=["float64", "2d", "unicode", "structured"])
def test_meta_of_the_wrong_dtype_or_shape(good, tmp_path, arr):
    opt, ps, path = good
    out = [{"name": n, "data": d if n != "__meta__.npy" else npy(arr)}
           for n, d in members_of(path).items()]
    bad = write_zip(tmp_path / "meta.npz", out)
    refused(bad, "__meta__", opt_and_params=(opt, ps))


def test_object_array_member_is_refused_without_pickle(good, tmp_path):
    opt, ps, path = good
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    bad = replaced(path, tmp_path / "pickle.npz", "a0.npy", data=buf.getvalue())
    refused(bad, "a0", opt_and_params=(opt, ps))


def test_declared_dtype_that_is_not_the_index_dtype(good, tmp_path):
    opt, ps, path = good
    bad = replaced(path, tmp_path / "dtype.npz", "a0.npy", data=npy(np.zeros(3, dtype=np.float32)))
    refused(bad, "a0", "float32", "float64", opt_and_params=(opt, ps))


@pytest.mark.parametrize("extra", ["a99.npy", "evil.npy", "readme.txt", "a0.npy"],
                         ids=["unindexed_array", "other_name", "not_npy", "duplicate"])
def test_members_the_index_does_not_mention_are_refused(good, tmp_path, extra):
    opt, ps, path = good
    out = [{"name": n, "data": d} for n, d in members_of(path).items()]
    out.append({"name": extra, "data": npy(np.zeros(3))})
    bad = write_zip(tmp_path / "extra.npz", out)
    refused(bad, extra.removesuffix(".npy"), opt_and_params=(opt, ps))


def test_truncated_member_data_is_refused(good, tmp_path):
    opt, ps, path = good
    raw = members_of(path)["a0.npy"]
    bad = replaced(path, tmp_path / "short.npz", "a0.npy", data=raw[:-8])
    refused(bad, "a0", opt_and_params=(opt, ps))


def test_corrupted_member_data_fails_the_crc(good, tmp_path):
    opt, ps, path = good
    raw = bytearray(members_of(path)["a0.npy"])
    raw[-1] ^= 0xFF
    bad = replaced(path, tmp_path / "crc.npz", "a0.npy", data=bytes(raw), crc=zlib.crc32(bytes(raw)) ^ 1)
    refused(bad, "a0", opt_and_params=(opt, ps))


# ---------------------------------------------------------------------- expect=


def test_expect_accepts_shapes_sizes_and_arrays(good):
    opt, ps, path = good
    want = opt.state_dict()
    for expect in (SHAPES, {"0": [3], "1": [2, 2]}, {"0": 3, "1": 4}, {"0": ps[0], "1": ps[1]},
                   {"0": (np.int64(3),), "1": (2, np.int32(2))}):
        assert_same(checkpoint.load(path, expect=expect), want)
    assert_same(checkpoint.load(path, expect=None), want)


def test_expect_refuses_other_shapes_and_names(good, tmp_path):
    opt, ps, path = good
    refused(path, "'1'", "(2, 2)", "(2, 3)", expect={"0": (3,), "1": (2, 3)})
    refused(path, "'1'", "4", "6", expect={"0": 3, "1": 6})
    refused(path, "'1'", "'0'", expect={"0": (3,)})  # a parameter the caller does not have
    refused(path, "'2'", expect={**SHAPES, "2": (5,)})  # one it has and the file lacks
    named = adaopt.Adam({"w": np.ones(3), "b": np.ones((2, 2))})
    named.step({"w": np.ones(3), "b": np.ones((2, 2))})
    other = tmp_path / "named.npz"
    named.save(other)
    refused(other, "'w'", "'0'", expect=SHAPES)


def test_expect_checks_even_a_parameter_without_buffers(tmp_path):
    """Plain SGD keeps no arrays, only steps: the names are still checked."""
    opt = adaopt.SGD(params(), lr=0.1)
    path = tmp_path / "sgd.npz"
    opt.save(path)
    checkpoint.load(path, expect=SHAPES)
    refused(path, "'0'", "'x'", expect={"x": (3,), "1": (2, 2)})


@pytest.mark.parametrize("expect", [[(3,), (2, 2)], {"0": "3"}, {"0": (-1,)}, {"0": (3.0,)},
                                    {0: (3,)}, {"0": None}],
                         ids=["list", "str_shape", "negative", "float_dim", "int_name", "none"])
def test_a_malformed_expect_is_a_type_error_of_the_caller(good, expect):
    _, _, path = good
    with pytest.raises((TypeError, ValueError)) as info:
        checkpoint.load(path, expect=expect)
    assert not isinstance(info.value, CheckpointError)
    assert "expect" in str(info.value)


# ---------------------------------------------------------------------- 3. deep JSON


@pytest.mark.parametrize("meta", [
    b"[" * 100_000 + b"]" * 100_000,
    b"{\"a\":" * 100_000 + b"1" + b"}" * 100_000,
], ids=["lists", "objects"])
def test_deeply_nested_meta_is_refused(good, tmp_path, meta):
    opt, ps, path = good
    bad = with_meta(path, tmp_path / "deep.npz", meta)
    refused(bad, "__meta__", opt_and_params=(opt, ps))


@pytest.mark.parametrize("depth", [100_000, 900, 3])
def test_deeply_nested_value_inside_a_valid_meta(good, tmp_path, depth):
    """Nested in a hyperparameter: parsed or not, it is no hyperparameter."""
    opt, ps, path = good
    meta = meta_of(path)
    text = json.dumps(meta).replace('"lr": 0.01', '"lr": ' + "[" * depth + "0.01" + "]" * depth)
    assert text != json.dumps(meta)
    bad = with_meta(path, tmp_path / "deepvalue.npz", text.encode())
    refused(bad, "__meta__", opt_and_params=(opt, ps))


# ---------------------------------------------------------------------- 4. malformed meta


def _set(path_in_meta, value):
    def edit(meta):
        node = meta
        for key in path_in_meta[:-1]:
            node = node[key]
        node[path_in_meta[-1]] = value
        return meta
    return edit


def _drop(path_in_meta):
    def edit(meta):
        node = meta
        for key in path_in_meta[:-1]:
            node = node[key]
        del node[path_in_meta[-1]]
        return meta
    return edit


MALFORMED = {
    "params_mixed": (_set(["param_groups", 0, "params"], [1, "a", None]), ["param_groups[0]", "params"]),
    "params_not_a_list": (_set(["param_groups", 0, "params"], "01"), ["param_groups[0]", "params"]),
    "params_missing": (_drop(["param_groups", 0, "params"]), ["param_groups[0]", "params"]),
    "groups_not_a_list": (_set(["param_groups"], {"params": ["0", "1"]}), ["param_groups"]),
    "groups_of_numbers": (_set(["param_groups"], [1, 2]), ["param_groups[0]"]),
    "groups_missing": (_drop(["param_groups"]), ["param_groups"]),
    "group_value_a_dict": (_set(["param_groups", 0, "lr"], {"a": 1}), ["param_groups[0]", "lr"]),
    "group_value_nested_list": (_set(["param_groups", 0, "betas"], [[0.9], [0.99]]),
                                ["param_groups[0]", "betas"]),
    "arrays_not_a_list": (_set(["arrays"], {"entry": "a0"}), ["arrays"]),
    "arrays_item_not_a_dict": (_set(["arrays", 0], "a0"), ["arrays[0]"]),
    "arrays_item_missing_entry": (_drop(["arrays", 0, "entry"]), ["arrays[0]", "entry"]),
    "arrays_item_missing_param": (_drop(["arrays", 1, "param"]), ["arrays[1]", "param"]),
    "arrays_item_missing_key": (_drop(["arrays", 0, "key"]), ["arrays[0]", "key"]),
    "arrays_item_missing_dtype": (_drop(["arrays", 0, "dtype"]), ["arrays[0]", "dtype"]),
    "arrays_item_int_param": (_set(["arrays", 0, "param"], 0), ["arrays[0]", "param"]),
    "arrays_item_null_key": (_set(["arrays", 0, "key"], None), ["arrays[0]", "key"]),
    "arrays_item_list_entry": (_set(["arrays", 0, "entry"], ["a0"]), ["arrays[0]", "entry"]),
    "arrays_item_unknown_dtype": (_set(["arrays", 0, "dtype"], "object"), ["arrays[0]", "object"]),
    "arrays_item_int_dtype": (_set(["arrays", 0, "dtype"], "int64"), ["arrays[0]", "int64"]),
    "arrays_item_meta_entry": (_set(["arrays", 0, "entry"], "__meta__"), ["arrays[0]", "__meta__"]),
    "arrays_item_step_key": (_set(["arrays", 0, "key"], "step"), ["arrays[0]", "step"]),
    "arrays_duplicate_entry": (lambda m: {**m, "arrays": m["arrays"] + [dict(m["arrays"][0], key="x")]},
                               ["a0"]),
    "arrays_duplicate_buffer": (lambda m: {**m, "arrays": [m["arrays"][0], dict(m["arrays"][0], entry="a1")]
                                           + m["arrays"][2:]}, ["exp_avg"]),
    "arrays_for_a_param_without_step": (_set(["arrays", 0, "param"], "ghost"), ["'ghost'"]),
    "steps_not_a_dict": (_set(["steps"], [2, 2]), ["steps"]),
    "step_bool": (_set(["steps", "0"], True), ["step"]),
    "optimizer_not_a_string": (_set(["optimizer"], ["Adam"]), ["optimizer"]),
    "conventions_not_a_string": (_set(["conventions"], 3), ["conventions"]),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_meta_is_a_checkpoint_error_naming_the_entry(good, tmp_path, case):
    opt, ps, path = good
    edit, fragments = MALFORMED[case]
    meta = edit(meta_of(path))
    bad = with_meta(path, tmp_path / "malformed.npz", json.dumps(meta).encode())
    refused(bad, *fragments, opt_and_params=(opt, ps))


def test_meta_with_a_number_too_long_to_parse(good, tmp_path):
    opt, ps, path = good
    text = json.dumps(meta_of(path)).replace('"lr": 0.01', '"lr": ' + "9" * 5000)
    bad = with_meta(path, tmp_path / "digits.npz", text.encode())
    refused(bad, "__meta__", opt_and_params=(opt, ps))


# ---------------------------------------------------------------------- what still loads


def test_round_trip_of_odd_but_valid_arrays(tmp_path):
    """Fortran order, zero-size, 0-d, big-endian and bfloat16 buffers come back exactly."""
    import ml_dtypes

    state = {
        "f": {"step": 3, "m": np.asfortranarray(np.arange(6.0).reshape(2, 3))},
        "e": {"step": 0, "m": np.zeros((0, 4), dtype=np.float32)},
        "s": {"step": 1, "m": np.array(2.5)},
        "b": {"step": 7, "m": np.arange(3.0).astype(">f8")},
        "h": {"step": 2, "m": np.arange(5.0).astype(ml_dtypes.bfloat16),
              "v": np.arange(5.0).astype(np.float16)},
    }
    sd = {"optimizer": "Adam", "conventions": "torch", "state": state,
          "param_groups": [{"params": list(state), "lr": 0.1, "betas": (0.9, 0.999), "eps": None}]}
    path = tmp_path / "odd.npz"
    checkpoint.save(sd, path)
    back = checkpoint.load(path, expect={n: st["m"].shape for n, st in state.items()})
    for name, st in state.items():
        for key, value in st.items():
            got = back["state"][name][key]
            if key == "step":
                assert got == value
                continue
            assert got.shape == value.shape and got.dtype.name == value.dtype.name, (name, key)
            assert np.array_equal(got.astype(np.float64), value.astype(np.float64)), (name, key)
            assert got.dtype.isnative and got.flags.writeable
    assert back["state"]["f"]["m"].flags.f_contiguous
    assert back["param_groups"][0]["betas"] == [0.9, 0.999]


def test_a_checkpoint_written_by_numpy_savez_compressed_still_loads(good, tmp_path):
    """Recompressed (not what save writes), a modest checkpoint is still read."""
    opt, ps, path = good
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    again = tmp_path / "compressed.npz"
    np.savez_compressed(again, **arrays)
    assert_same(checkpoint.load(again), opt.state_dict())
    assert_same(checkpoint.load(again, expect=SHAPES), opt.state_dict())


# ---------------------------------------------------------------------- 5. killed writers


CHILD = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import adaopt

    path, mode = sys.argv[1], sys.argv[2]
    ps = [np.full(2_000_000, 3.0), np.full((2, 2), 3.0)]  # 16 MB: the write takes a while
    opt = adaopt.Adam(ps, lr=0.5)
    opt.step([np.ones_like(p) for p in ps])

    def stall(*args, **kwargs):
        print("stalled", flush=True)
        time.sleep(120)

    if mode == "fsync":
        os.fsync = stall
    os.replace = stall  # never finish: the parent kills us first
    print("saving", flush=True)
    opt.save(path)
""")


def _temps(folder, keep):
    return sorted(n for n in os.listdir(folder) if n != keep)


def _kill_mid_save(tmp_path, path, mode):
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), mode], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "saving", child.stderr.read()
        deadline = time.monotonic() + 60
        if mode == "early":  # as soon as the temporary file appears, mid-write
            while not _temps(tmp_path, path.name):
                assert time.monotonic() < deadline and child.poll() is None, child.stderr.read()
                time.sleep(0.001)
        else:  # blocked in fsync or before the rename
            assert child.stdout.readline().strip() == "stalled", child.stderr.read()
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize("mode", ["early", "fsync", "replace"])
def test_sigkill_during_save_keeps_the_old_checkpoint_and_the_next_save_cleans_up(tmp_path, mode):
    opt, ps = trained()
    path = tmp_path / "ckpt.npz"
    opt.save(path)
    before = path.read_bytes()
    _kill_mid_save(tmp_path, path, mode)
    assert path.read_bytes() == before, "the previous checkpoint changed"
    assert_same(checkpoint.load(path), opt.state_dict())
    fresh, fps = trained(steps=0)
    fresh.load(path)
    assert_same(fresh.state_dict(), opt.state_dict())
    left = _temps(tmp_path, path.name)
    assert left, "the killed writer left no temporary file (was it killed too late?)"
    for name in left:
        assert len(name) < 40, name
    # the next save into that folder removes what the killed writer left
    opt.step([p + 1 for p in ps])
    opt.save(path)
    assert _temps(tmp_path, path.name) == []
    assert_same(checkpoint.load(path), opt.state_dict())


def test_a_failed_save_leaves_no_file_and_the_old_checkpoint(tmp_path, monkeypatch):
    opt, ps = trained()
    path = tmp_path / "ckpt.npz"
    opt.save(path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        opt.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_save_refuses_a_state_it_could_not_load_before_writing(tmp_path):
    path = tmp_path / "x.npz"
    sd = {"optimizer": "Adam", "conventions": "torch", "param_groups": [{"params": ["0"], "lr": 0.1}],
          "state": {"0": {"step": 1, "m": np.zeros(3, dtype=np.int64)}}}
    with pytest.raises((TypeError, ValueError)):
        checkpoint.save(sd, path)
    sd["state"] = {0: {"step": 1, "m": np.zeros(3)}}
    with pytest.raises((TypeError, ValueError)):
        checkpoint.save(sd, path)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------- 6. long names


@pytest.mark.parametrize("length", [250, 255])
def test_a_checkpoint_with_a_long_file_name(tmp_path, length):
    opt, ps = trained()
    path = tmp_path / ("c" * (length - 4) + ".npz")
    assert len(path.name) == length
    opt.save(path)
    fresh, _ = trained(steps=0)
    fresh.load(path)
    assert_same(fresh.state_dict(), opt.state_dict())
    assert os.listdir(tmp_path) == [path.name]
