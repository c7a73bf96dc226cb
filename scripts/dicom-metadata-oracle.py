#!/usr/bin/env python3
"""pydicom's view of DICOM files, for differential tests of lightbox-dicom's metadata.

  .venv/bin/python scripts/dicom-metadata-oracle.py CORPUS_DIR OUT_DIR

For every file in CORPUS_DIR/index.json that pydicom reads (force=True) and that has a
SOPInstanceUID, writes OUT_DIR/<name>.json: {"transfer_syntax": uid, "little_endian": bool,
"elements": {key: value}} for the file meta group and the data set, where key is the keyword
(or the 8-hex tag for private and unknown tags) and value is normalised like the HealthImaging
metadata document: text trimmed of trailing spaces/NUL, VM > 1 as lists, empty as null,
numbers as numbers, AT as "GGGGEEEE", binary values as base64 of the bytes as stored (only
little-endian), sequences as lists of objects, Pixel Data as null.
Writes OUT_DIR/index.json listing the files written. Idempotent.
"""
import base64
import json
import math
import os
import sys
import warnings

import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

BINARY = {"OB", "OW", "OD", "OF", "OL", "OV", "UN", "OB or OW", "US or OW"}
PIXEL = {0x7FE00010, 0x7FE00008, 0x7FE00009}


def key(elem):
    tag = int(elem.tag)
    group, element = tag >> 16, tag & 0xFFFF
    if group % 2 == 1 or (element == 0 and group != 2):
        return f"{tag:08X}"
    kw = keyword_for_tag(tag)
    return kw if kw else f"{tag:08X}"


def text(v):
    s = str(v).rstrip(" \0")
    return s if s else None


def scalar(vr, v):
    if v is None:
        return None
    if vr == "AT":
        return f"{int(v):08X}"
    if vr in ("US", "SS", "UL", "SL", "SV", "UV"):
        return int(v)
    if vr in ("FL", "FD"):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, bytes):
        return text(v.decode("latin-1"))
    return text(v)


SWAP = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
LITTLE = True


def to_little(vr, b):
    """Binary values as little-endian bytes (the metadata document's byte order)."""
    n = SWAP.get(vr)
    if LITTLE or not n:
        return b
    return b"".join(b[i : i + n][::-1] for i in range(0, len(b) - len(b) % n, n))


def value(elem):
    if int(elem.tag) in PIXEL:
        return None
    vr = elem.VR
    v = elem.value
    if vr == "SQ":
        return [dataset(item) for item in v]
    if vr in BINARY:
        if v is None or v == b"" or len(v) == 0:
            return None
        if isinstance(v, (bytes, bytearray)):
            return base64.b64encode(to_little(vr, bytes(v))).decode()
        return None
    if v is None or v == "" or (isinstance(v, (list, MultiValue)) and len(v) == 0):
        return None
    if isinstance(v, (list, MultiValue)):
        items = [scalar(vr, x) for x in v]
        if len(items) == 1:
            return items[0]
        if vr not in ("US", "SS", "UL", "SL", "SV", "UV", "FL", "FD", "AT"):
            items = ["" if x is None else x for x in items]
        return items
    return scalar(vr, v)


def dataset(ds):
    out = {}
    for elem in ds:
        k = key(elem)
        if k in out:
            k = f"{int(elem.tag):08X}"
        out[k] = value(elem)
    return out


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst = argv[1], argv[2]
    os.makedirs(dst, exist_ok=True)
    written = []
    with open(os.path.join(src, "index.json")) as f:
        names = [e["name"] for e in json.load(f)]
    warnings.simplefilter("ignore")
    for name in names:
        try:
            ds = pydicom.dcmread(os.path.join(src, name), force=True)
            if "SOPInstanceUID" not in ds:
                continue
            global LITTLE
            LITTLE = bool(ds.is_little_endian)
            meta = dataset(ds.file_meta) if ds.file_meta else {}
            doc = {
                "transfer_syntax": str(ds.file_meta.get("TransferSyntaxUID", "")),
                "little_endian": bool(ds.is_little_endian),
                "elements": {**meta, **dataset(ds)},
            }
            text_out = json.dumps(doc, indent=0, sort_keys=True, allow_nan=False)
        except Exception as e:  # noqa: BLE001 - any failure means "pydicom has no opinion"
            print(f"skip {name}: {type(e).__name__}", file=sys.stderr)
            continue
        with open(os.path.join(dst, name + ".json"), "w") as f:
            f.write(text_out)
        written.append(name)
    with open(os.path.join(dst, "index.json"), "w") as f:
        json.dump(written, f, indent=0)
    print(f"{len(written)} files in {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
