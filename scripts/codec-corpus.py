#!/usr/bin/env python3
"""Real-DICOM fixtures and Python-side oracles for crates/lightbox-codec tests.

Run with the project venv (made by scripts/setup-test-env.sh):

  .venv/bin/python scripts/codec-corpus.py extract DIR
      Writes, for a fixed list of pydicom / pydicom-data test files, the first (or a chosen)
      frame as NAME.raw (interleaved samples, 1 byte each for <= 8 bits else 2 bytes
      little-endian, two's complement when signed), NAME.json (width, height, components,
      bits, signed), NAME.pnm (PGM/PPM, unsigned only) and NAME.ic.j2c (HTJ2K written by
      OpenJPH 0.26 through imagecodecs). DICOM files themselves are never copied.

  .venv/bin/python scripts/codec-corpus.py encode DIR
      Writes NAME.ic.j2c (OpenJPH 0.26 through imagecodecs) for every NAME.raw/NAME.json.

  .venv/bin/python scripts/codec-corpus.py check DIR
      For every NAME.ours.j2c with NAME.raw/NAME.json next to it, decodes the codestream with
      imagecodecs.htj2k_decode (OpenJPH 0.26) and imagecodecs.jpeg2k_decode (OpenJPEG) and
      prints "OK NAME" or "FAIL NAME reason" per decoder.
"""
import json
import os
import sys
import warnings

import numpy as np

warnings.filterwarnings("ignore")

# name, file, frame, bit shift (to derive other bit depths from real data)
CORPUS = [
    ("ct_small_s16", "CT_small.dcm", 0, 0),
    ("mr_small_s16", "MR_small.dcm", 0, 0),
    ("mlut18_s12", "mlut_18.dcm", 0, 0),
    ("emri_f0_u12", "emri_small.dcm", 0, 0),
    ("emri_f7_u12", "emri_small.dcm", 7, 0),
    ("mr2_u12", "MR2_UNCR.dcm", 0, 0),
    ("siemens_u12", "MR-SIEMENS-DICOM-WithOverlays.dcm", 0, 0),
    ("rg1_u15", "RG1_UNCR.dcm", 0, 0),
    ("rg1_u14", "RG1_UNCR.dcm", 0, 1),
    ("rg3_u10", "RG3_UNCR.dcm", 0, 0),
    ("us1_rgb8", "US1_UNCR.dcm", 0, 0),
    ("sc_rgb16", "SC_rgb_16bit.dcm", 0, 0),
    ("vlut_u8", "vlut_04.dcm", 0, 0),
    ("liver_u1", "liver.dcm", 1, 0),
]


def frame_of(ds, idx):
    import pydicom  # noqa: F401

    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[idx]
    return arr


def extract(out):
    import imagecodecs
    import pydicom
    import pydicom.data as pd

    os.makedirs(out, exist_ok=True)
    manifest = []
    for name, fname, fidx, shift in CORPUS:
        path = pd.get_testdata_file(fname)
        if path is None:
            print(f"missing {fname}", file=sys.stderr)
            continue
        ds = pydicom.dcmread(path)
        arr = np.asarray(frame_of(ds, fidx))
        bits = int(ds.BitsStored) - shift
        signed = int(ds.PixelRepresentation) == 1
        comps = int(ds.SamplesPerPixel)
        if comps == 3 and ds.get("PlanarConfiguration", 0) == 1 and arr.shape[0] == 3:
            arr = np.moveaxis(arr, 0, -1)
        a = arr.astype(np.int64)
        if signed:
            a = a >> shift
            m = (1 << bits) - 1
            a = a & m
            a = np.where(a >= (1 << (bits - 1)), a - (1 << bits), a)
        else:
            a = (a >> shift) & ((1 << bits) - 1)
        h, w = a.shape[0], a.shape[1]
        if bits <= 8:
            dt = np.int8 if signed else np.uint8
        else:
            dt = np.dtype("<i2") if signed else np.dtype("<u2")
        a = a.astype(dt)
        a.tofile(os.path.join(out, name + ".raw"))
        meta = {"width": w, "height": h, "components": comps, "bits": bits, "signed": signed}
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump(meta, f)
        if not signed:
            magic = b"P6" if comps == 3 else b"P5"
            maxval = (1 << bits) - 1
            body = a.astype(">u2").tobytes() if maxval > 255 else a.astype(np.uint8).tobytes()
            with open(os.path.join(out, name + ".pnm"), "wb") as f:
                f.write(b"%s\n%d %d\n%d\n" % (magic, w, h, maxval) + body)
        encode_one(out, name, a)
        manifest.append(dict(meta, name=name))
        print(name, meta)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


def encode_one(d, name, a):
    import imagecodecs

    try:
        enc = imagecodecs.htj2k_encode(a)
        with open(os.path.join(d, name + ".ic.j2c"), "wb") as f:
            f.write(enc)
    except Exception as e:  # noqa: BLE001
        print(f"imagecodecs could not encode {name}: {e}", file=sys.stderr)


def encode(d):
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".json") and fn != "manifest.json":
            name = fn[:-5]
            a, _ = load_raw(d, name)
            encode_one(d, name, a)


def load_raw(d, name):
    with open(os.path.join(d, name + ".json")) as f:
        m = json.load(f)
    if m["bits"] <= 8:
        dt = np.int8 if m["signed"] else np.uint8
    else:
        dt = np.dtype("<i2") if m["signed"] else np.dtype("<u2")
    a = np.fromfile(os.path.join(d, name + ".raw"), dtype=dt)
    shape = (m["height"], m["width"], m["components"]) if m["components"] > 1 else (m["height"], m["width"])
    return a.reshape(shape), m


def check(d):
    import imagecodecs

    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".ours.j2c"):
            continue
        name = fn[: -len(".ours.j2c")]
        ref, m = load_raw(d, name)
        data = open(os.path.join(d, fn), "rb").read()
        for label, fun in (("openjph", imagecodecs.htj2k_decode), ("openjpeg", imagecodecs.jpeg2k_decode)):
            try:
                got = np.asarray(fun(data))
                if got.ndim == 3 and ref.ndim == 3 and got.shape[0] == 3 and ref.shape[2] == 3 and got.shape != ref.shape:
                    got = np.moveaxis(got, 0, -1)
                if got.shape != ref.shape:
                    print(f"FAIL {label} {name} shape {got.shape} != {ref.shape}")
                elif not np.array_equal(got.astype(np.int64), ref.astype(np.int64)):
                    bad = int(np.count_nonzero(got.astype(np.int64) != ref.astype(np.int64)))
                    print(f"FAIL {label} {name} {bad} samples differ")
                else:
                    print(f"OK {label} {name}")
            except Exception as e:  # noqa: BLE001
                print(f"FAIL {label} {name} error {e}")


if __name__ == "__main__":
    cmds = {"extract": extract, "encode": encode, "check": check}
    if len(sys.argv) != 3 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](sys.argv[2])
