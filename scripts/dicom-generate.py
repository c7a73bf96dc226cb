#!/usr/bin/env python3
"""Generates synthetic but realistic DICOM P10 studies (CT-like) into a directory.

    .venv/bin/python scripts/dicom-generate.py OUT --studies 1 --series-per-study 2 \
        --instances-per-series 100 [--rows 512 --cols 512 --bits 12 --signed --frames 1 \
        --transfer-syntax explicit|implicit|rle|jpeg-ls|j2k|htj2k --patient-id ID --seed 0 \
        --conflict-every M --jobs N]

Layout: OUT/study-SSS/series-TTT/inst-IIIII.dcm (sorted key order = instance order, so the first
file of every series is never a conflicting one). Everything (UIDs, dates, pixels) is
deterministic from --seed.

Pixels: an anatomy-like CT phantom in Hounsfield units (body outline with a fat layer, lungs,
liver, kidneys, aorta, spine with cortical bone, smooth tissue texture) that changes smoothly
from slice to slice, plus Gaussian noise (more in tissue than in air), so lossless compression
ratios are close to real CT (about 2-3:1 at 12 bits). Stored values are unsigned with
RescaleIntercept -1024 by default, or signed (two's complement, intercept 0) with --signed.
--bits 8 stores HU/16+64 in 8 bits.

--frames F > 1 writes Enhanced CT Image Storage objects (F frames each, shared and per-frame
functional groups); otherwise classic CT Image Storage. The series' slices are numbered across
instances and frames, so a series is one continuous volume either way.

--conflict-every M: every M-th instance of a series (InstanceNumber M, 2M, ...) gets another
PatientID ("<id>-CONFLICT"), which a HealthImaging import puts in a non-primary image set.

Compressed syntaxes (all lossless) use imagecodecs: RLE (PackBits per row, DICOM segment
layout), JPEG-LS (CharLS), JPEG 2000 (OpenJPEG), HTJ2K (OpenJPH, transfer syntax .201).
Missing encoders end the run with an error naming the package.

Prints a JSON summary on stdout: files, bytes, frames, seconds, instances_per_second and per
series the UIDs, PatientIDs and which files conflict.
"""

import argparse
import datetime
import hashlib
import json
import os
import pathlib
import sys
import time

import numpy as np

try:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element, write_file_meta_info
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        JPEG2000Lossless,
        JPEGLSLossless,
        RLELossless,
    )
except ImportError:  # pragma: no cover
    sys.exit("dicom-generate.py needs pydicom (run scripts/setup-test-env.sh and use .venv/bin/python)")

HTJ2KLossless = "1.2.840.10008.1.2.4.201"
SYNTAXES = {
    "explicit": ExplicitVRLittleEndian,
    "implicit": ImplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg-ls": JPEGLSLossless,
    "j2k": JPEG2000Lossless,
    "htj2k": HTJ2KLossless,
}
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.1"
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.10.1507.1"  # any valid UID; identifies this generator
NAMES = ["DOE^JANE", "ROE^RICHARD", "MUSTERMANN^ERIKA", "DUPONT^MARIE", "ROSSI^MARIO", "TANAKA^HANAKO"]
BODY_PARTS = ["CHEST", "ABDOMEN", "CHEST", "PELVIS"]


def uid(seed, *parts):
    """A deterministic 2.25 UID (UUID-derived, <= 44 characters)."""
    digest = hashlib.sha256(("lightbox-generate/%d/" % seed + "/".join(map(str, parts))).encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big") >> 1)


# --- pixels -----------------------------------------------------------------------------------


class Phantom:
    """Per-series key slices of an HU phantom; any slice is interpolated between two keys."""

    def __init__(self, rows, cols, slices, seed, keys=8):
        self.rows, self.cols = rows, cols
        self.slices = max(1, slices)
        n_keys = max(2, min(keys, self.slices))
        self.key_z = np.linspace(0.0, 1.0, n_keys)
        rng = np.random.default_rng(seed)
        self.params = rng.uniform(-1, 1, size=16)
        y, x = np.mgrid[-1:1:rows * 1j, -1:1:cols * 1j].astype(np.float32)
        self.keys = [self._slice(x, y, z) for z in self.key_z]
        # Noise bank: a window at a random offset is one slice's noise (vectorized, no per-slice RNG
        # over the whole image).
        self.noise = rng.standard_normal(rows * cols * 3, dtype=np.float32)
        self.rng = rng

    def _slice(self, x, y, z):
        p = self.params
        e = lambda cx, cy, ax, ay: ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2  # noqa: E731
        hu = np.full(x.shape, -1000.0, np.float32)
        # Body: ellipse that narrows towards the ends of the volume.
        bw, bh = 0.86 - 0.08 * (z - 0.5) ** 2 + 0.02 * p[0], 0.62 + 0.03 * p[1]
        body = e(0, 0.05, bw, bh)
        hu[body < 1.0] = -100.0  # subcutaneous fat
        inner = body < 0.80
        # Smooth soft-tissue texture (a few low-frequency waves).
        tex = (8 * np.sin(6.1 * x + 3 * p[2] + 2 * z) * np.cos(5.3 * y + p[3])
               + 5 * np.sin(11.7 * (x + y) + 4 * z))
        hu[inner] = (40.0 + tex)[inner]
        # Lungs: large in the upper half of the volume, gone at the bottom.
        lung = max(0.0, 1.0 - 1.6 * z)
        if lung > 0.02:
            for side in (-1, 1):
                le = e(side * 0.38, -0.02, 0.27 * lung + 0.02, 0.40 * lung + 0.02)
                m = (le < 1.0) & inner
                hu[m] = (-850.0 + 30 * np.sin(20 * x + 17 * y))[m]
        # Liver (right, growing with z), kidneys (lower half).
        liver = max(0.0, min(1.0, 2.2 * z - 0.3))
        if liver > 0.02:
            m = (e(-0.30, 0.05, 0.35 * liver + 0.02, 0.30 * liver + 0.02) < 1.0) & inner
            hu[m] = (60.0 + tex)[m]
        kid = max(0.0, 1.0 - abs(z - 0.75) * 4)
        if kid > 0.02:
            for side in (-1, 1):
                m = e(side * 0.32, 0.30, 0.09 * kid + 0.01, 0.13 * kid + 0.01) < 1.0
                hu[m] = 30.0
        # Aorta with contrast, spine (cortical ring + cancellous core).
        hu[e(0.04, 0.18, 0.06, 0.06) < 1.0] = 180.0
        spine = e(0.0, 0.42, 0.11, 0.10)
        hu[spine < 1.0] = 700.0
        hu[spine < 0.55] = 250.0 + 40 * p[4]
        # Table under the patient.
        hu[(y > 0.80) & (y < 0.84) & (np.abs(x) < 0.95)] = 300.0
        return hu

    def frame(self, index):
        """HU image (float32) of slice `index` (0-based) with noise."""
        z = index / max(1, self.slices - 1)
        k = min(int(np.searchsorted(self.key_z, z, side="right")) - 1, len(self.keys) - 2)
        t = (z - self.key_z[k]) / (self.key_z[k + 1] - self.key_z[k])
        a, b = self.keys[k], self.keys[k + 1]
        img = a + np.float32(t) * (b - a)
        off = int(self.rng.integers(0, self.noise.size - img.size))
        noise = self.noise[off:off + img.size].reshape(img.shape)
        sigma = np.where(img > -900, np.float32(12.0), np.float32(3.0))
        img += sigma * noise
        return img


def to_stored(hu, bits, signed):
    """HU -> stored pixel values (and the rescale intercept / slope to get back)."""
    if bits <= 8:
        slope, intercept = 16.0, -1024.0
    else:
        slope, intercept = 1.0, (0.0 if signed else -1024.0)
    vals = np.rint((hu - intercept) / slope)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    np.clip(vals, lo, hi, out=vals)
    dtype = ({True: np.int8, False: np.uint8} if bits <= 8 else {True: np.int16, False: np.uint16})[signed]
    return vals.astype(dtype), intercept, slope


# --- encoders ---------------------------------------------------------------------------------


def _imagecodecs(name):
    try:
        import imagecodecs
    except ImportError:
        sys.exit(f"--transfer-syntax {name} needs imagecodecs (pip install imagecodecs; "
                 "scripts/setup-test-env.sh installs it)")
    return imagecodecs


def encoder_for(syntax, bits, signed):
    """frame ndarray -> encoded bytes, or None for native syntaxes."""
    if syntax in ("explicit", "implicit"):
        return None
    ic = _imagecodecs(syntax)
    if syntax == "rle":
        if not ic.PACKBITS.available:
            sys.exit("imagecodecs was built without PackBits (needed for RLE)")

        def rle(frame):
            # DICOM RLE: one segment per byte plane, most significant byte first, each row encoded
            # separately (PackBits); 64-byte header with the segment offsets; segments padded even.
            u = frame.view(np.uint8).reshape(frame.shape + (frame.dtype.itemsize,))
            segments = []
            for plane in range(frame.dtype.itemsize - 1, -1, -1):
                seg = ic.packbits_encode(np.ascontiguousarray(u[..., plane]))
                if len(seg) % 2:
                    seg += b"\x00"
                segments.append(seg)
            header = np.zeros(16, "<u4")
            header[0] = len(segments)
            offset = 64
            for i, seg in enumerate(segments):
                header[i + 1] = offset
                offset += len(seg)
            return header.tobytes() + b"".join(segments)

        return rle
    if syntax == "jpeg-ls":
        if not ic.JPEGLS.available:
            sys.exit("imagecodecs was built without JPEG-LS (CharLS)")

        def jls(frame):
            # JPEG-LS has no signed samples: the two's complement pattern is coded as unsigned.
            # CharLS (via imagecodecs) always codes the container's precision (8 or 16 bits), so
            # the pattern is the sign-extended container one (what pydicom decodes back).
            if signed:
                frame = frame.view(np.uint16 if frame.dtype.itemsize == 2 else np.uint8)
            return ic.jpegls_encode(frame, level=0)

        return jls
    if syntax == "j2k":
        if not ic.JPEG2K.available:
            sys.exit("imagecodecs was built without JPEG 2000 (OpenJPEG)")
        return lambda frame: ic.jpeg2k_encode(frame, level=0, codecformat="J2K", reversible=True,
                                              bitspersample=bits)
    if syntax == "htj2k":
        if not ic.HTJ2K.available:
            sys.exit("imagecodecs was built without HTJ2K (OpenJPH)")
        return lambda frame: ic.htj2k_encode(frame, level=0)
    raise ValueError(syntax)


# --- datasets ---------------------------------------------------------------------------------


def seq(*items):
    out = []
    for kw in items:
        d = Dataset()
        for k, v in kw.items():
            setattr(d, k, v)
        out.append(d)
    return out


def build_template(args, study, series, intercept, slope, ctx):
    """The series' Dataset (with file meta); `set_instance` fills in what changes per instance."""
    multiframe = args.frames > 1
    sop_class = ENHANCED_CT_IMAGE if multiframe else CT_IMAGE
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ctx["series_uid"]
    meta.TransferSyntaxUID = SYNTAXES[args.transfer_syntax]
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = "LIGHTBOX_GEN"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ctx["series_uid"]
    ds.StudyDate, ds.StudyTime = ctx["study_date"], ctx["study_time"]
    ds.SeriesDate, ds.SeriesTime = ctx["study_date"], ctx["series_time"]
    ds.ContentDate, ds.ContentTime = ctx["study_date"], ctx["series_time"]
    ds.AcquisitionDateTime = ctx["study_date"] + ctx["series_time"]
    ds.AccessionNumber = ctx["accession"]
    ds.Modality = "CT"
    ds.Manufacturer = "Lightbox Synthetic"
    ds.InstitutionName = "Lightbox General Hospital"
    ds.ReferringPhysicianName = "WHO^DR"
    ds.StudyDescription = ctx["study_description"]
    ds.SeriesDescription = ctx["series_description"]
    ds.ManufacturerModelName = "dicom-generate.py"
    ds.PatientName = ctx["patient_name"]
    ds.PatientID = ctx["patient_id"]
    ds.PatientBirthDate = ctx["birth_date"]
    ds.PatientSex = ctx["sex"]
    ds.BodyPartExamined = ctx["body_part"]
    ds.SliceThickness = "1.25"
    ds.KVP = "120"
    ds.StudyInstanceUID = ctx["study_uid"]
    ds.SeriesInstanceUID = ctx["series_uid"]
    ds.StudyID = str(study + 1)
    ds.SeriesNumber = series + 1
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = ctx["for_uid"]
    ds.PositionReferenceIndicator = ""
    spacing = [f"{350.0 / args.rows:.6g}", f"{350.0 / args.cols:.6g}"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = args.rows, args.cols
    ds.BitsAllocated = 8 if args.bits <= 8 else 16
    ds.BitsStored = args.bits
    ds.HighBit = args.bits - 1
    ds.PixelRepresentation = 1 if args.signed else 0
    window = ["40", "400"]
    if multiframe:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
        ds.NumberOfFrames = args.frames
        ds.ContentQualification = "PRODUCT"
        ds.BurnedInAnnotation = "NO"
        ds.PresentationLUTShape = "IDENTITY"
        ds.LossyImageCompression = "00"
        ds.SharedFunctionalGroupsSequence = seq({
            "PixelMeasuresSequence": seq({"PixelSpacing": spacing, "SliceThickness": "1.25"}),
            "PlaneOrientationSequence": seq({"ImageOrientationPatient": ["1", "0", "0", "0", "1", "0"]}),
            "PixelValueTransformationSequence": seq({"RescaleIntercept": f"{intercept:g}",
                                                     "RescaleSlope": f"{slope:g}", "RescaleType": "HU"}),
            "FrameVOILUTSequence": seq({"WindowCenter": window[0], "WindowWidth": window[1]}),
            "CTImageFrameTypeSequence": seq({"FrameType": ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]}),
        })
    else:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelSpacing = spacing
        ds.RescaleIntercept = f"{intercept:g}"
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = window
    return ds


def position(s):
    return ["-175", "-175", f"{-1.25 * s:.2f}"]


def set_instance(ds, args, study, series, inst, pixels_frames, encoder, ctx):
    """Fills the per-instance attributes (1-based `inst`) of the series template; True if conflicting."""
    sop_uid = uid(args.seed, "sop", study, series, inst)
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPInstanceUID = sop_uid
    conflict = bool(args.conflict_every and inst % args.conflict_every == 0)
    ds.PatientID = ctx["patient_id"] + ("-CONFLICT" if conflict else "")
    ds.InstanceNumber = inst
    first_slice = (inst - 1) * args.frames
    if args.frames > 1:
        ds.PerFrameFunctionalGroupsSequence = seq(*[{
            "PlanePositionSequence": seq({"ImagePositionPatient": position(first_slice + f)}),
            "FrameContentSequence": seq({"InStackPositionNumber": first_slice + f + 1,
                                         "StackID": "1", "DimensionIndexValues": [1, first_slice + f + 1]}),
        } for f in range(args.frames)])
    else:
        ds.ImagePositionPatient = position(first_slice)
        ds.SliceLocation = f"{-1.25 * first_slice:.2f}"
    if encoder is None:
        data = b"".join(f.tobytes() for f in pixels_frames)
        if len(data) % 2:
            data += b"\x00"
        ds.PixelData = data
        ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
    else:
        ds.PixelData = encapsulate([encoder(f) for f in pixels_frames], has_bot=True)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    return conflict


def _fp(implicit):
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = implicit
    return fp


def serialize(ds, implicit, cache):
    """The P10 bytes of `ds`: like `ds.save_as(enforce_file_format=True)`, but elements that repeat
    from instance to instance are encoded once (pydicom's writer costs ~0.1 ms per element)."""
    fp = _fp(False)
    fp.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
    out = [fp.getvalue()]
    for elem in ds:
        if elem.VR == "SQ" or elem.tag == 0x7FE00010:
            sub = _fp(implicit)
            write_data_element(sub, elem)
            out.append(sub.getvalue())
            continue
        key = (elem.tag, elem.VR, str(elem.value))
        b = cache.get(key)
        if b is None:
            sub = _fp(implicit)
            write_data_element(sub, elem)
            b = cache[key] = sub.getvalue()
            if len(cache) > 100_000:
                cache.clear()
        out.append(b)
    return b"".join(out)


def series_context(args, study, series):
    seed = args.seed
    day = datetime.date(2024, 1, 1) + datetime.timedelta(days=(seed * 37 + study * 11) % 700)
    born = datetime.date(1940, 1, 1) + datetime.timedelta(days=(seed * 101 + study * 977) % 25000)
    minutes = (seed * 13 + study * 7) % 600 + 7 * 60
    patient = args.patient_id or f"LB{seed:04d}-{study + 1:03d}"
    return {
        "study_uid": uid(seed, "study", study),
        "series_uid": uid(seed, "series", study, series),
        "for_uid": uid(seed, "for", study),
        "study_date": day.strftime("%Y%m%d"),
        "study_time": f"{minutes // 60:02d}{minutes % 60:02d}00",
        "series_time": f"{minutes // 60:02d}{(minutes % 60 + series) % 60:02d}{series % 60:02d}",
        "accession": f"ACC{seed:04d}{study + 1:05d}",
        "patient_id": patient,
        "patient_name": NAMES[(seed + study) % len(NAMES)] if not args.patient_id
        else NAMES[sum(map(ord, args.patient_id)) % len(NAMES)],
        "birth_date": born.strftime("%Y%m%d"),
        "sex": "FM"[(seed + study) % 2],
        "body_part": BODY_PARTS[(seed + study) % len(BODY_PARTS)],
        "study_description": f"CT {BODY_PARTS[(seed + study) % len(BODY_PARTS)].title()} (synthetic)",
        "series_description": f"Axial {1.25 * (series + 1):.2f}mm",
    }


def write_series(args_and_ids):
    args, study, series = args_and_ids
    out = pathlib.Path(args.out) / f"study-{study + 1:03d}" / f"series-{series + 1:03d}"
    out.mkdir(parents=True, exist_ok=True)
    ctx = series_context(args, study, series)
    slices = args.instances_per_series * args.frames
    phantom = Phantom(args.rows, args.cols, slices, seed=int(uid(args.seed, "px", study, series)[5:]) % 2**63)
    encoder = encoder_for(args.transfer_syntax, args.bits, args.signed)
    little = args.transfer_syntax != "implicit"
    intercept, slope = to_stored(np.zeros((1, 1), np.float32), args.bits, args.signed)[1:]
    ds = build_template(args, study, series, intercept, slope, ctx)
    cache = {}
    files, size, conflicts = [], 0, []
    for inst in range(1, args.instances_per_series + 1):
        frames = [to_stored(phantom.frame((inst - 1) * args.frames + f), args.bits, args.signed)[0]
                  for f in range(args.frames)]
        conflict = set_instance(ds, args, study, series, inst, frames, encoder, ctx)
        data = serialize(ds, not little, cache)
        path = out / f"inst-{inst:05d}.dcm"
        path.write_bytes(data)
        size += len(data)
        rel = str(path.relative_to(args.out))
        files.append(rel)
        if conflict:
            conflicts.append(rel)
    return {
        "study_instance_uid": ctx["study_uid"],
        "series_instance_uid": ctx["series_uid"],
        "patient_id": ctx["patient_id"],
        "instances": len(files),
        "bytes": size,
        "conflicting_files": conflicts,
        "conflicting_patient_id": ctx["patient_id"] + "-CONFLICT" if conflicts else None,
        "sop_instance_uids": [uid(args.seed, "sop", study, series, i)
                              for i in range(1, args.instances_per_series + 1)],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--studies", type=int, default=1)
    ap.add_argument("--series-per-study", type=int, default=1)
    ap.add_argument("--instances-per-series", type=int, default=10)
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--cols", type=int, default=512)
    ap.add_argument("--bits", type=int, default=12, help="BitsStored, 8..16 (BitsAllocated 8 or 16)")
    ap.add_argument("--signed", action="store_true", help="PixelRepresentation 1 (default unsigned)")
    ap.add_argument("--frames", type=int, default=1, help="frames per instance (> 1: Enhanced CT)")
    ap.add_argument("--transfer-syntax", choices=sorted(SYNTAXES), default="explicit")
    ap.add_argument("--patient-id", help="one PatientID for every study (default: one per study)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--conflict-every", type=int, default=0, metavar="M",
                    help="every M-th instance of a series gets another PatientID")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (one series at a time each)")
    ap.add_argument("--list-sop-uids", action="store_true", help="include every SOPInstanceUID in the summary")
    args = ap.parse_args(argv)
    if args.bits != 8 and not 9 <= args.bits <= 16:
        ap.error("--bits must be 8 or 9..16")
    if min(args.studies, args.series_per_study, args.instances_per_series, args.frames, args.rows, args.cols) < 1:
        ap.error("counts and sizes must be >= 1")
    encoder_for(args.transfer_syntax, args.bits, args.signed)  # fail early on a missing encoder
    pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
    work = [(args, st, se) for st in range(args.studies) for se in range(args.series_per_study)]
    t0 = time.perf_counter()
    if args.jobs > 1 and len(work) > 1:
        import multiprocessing

        with multiprocessing.Pool(min(args.jobs, len(work))) as pool:
            results = pool.map(write_series, work)
    else:
        results = [write_series(w) for w in work]
    seconds = time.perf_counter() - t0
    files = sum(r["instances"] for r in results)
    if not args.list_sop_uids:
        for r in results:
            del r["sop_instance_uids"]
    summary = {
        "out": str(pathlib.Path(args.out).resolve()),
        "files": files,
        "bytes": sum(r["bytes"] for r in results),
        "frames": files * args.frames,
        "transfer_syntax": SYNTAXES[args.transfer_syntax],
        "rows": args.rows, "cols": args.cols, "bits_stored": args.bits, "signed": args.signed,
        "seconds": round(seconds, 3),
        "instances_per_second": round(files / seconds, 1) if seconds > 0 else None,
        "series": results,
    }
    json.dump(summary, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
