"""DICOMweb GetDICOMInstance (issue #8, notes §11.1–11.2) with the `dicomweb-client` library (a
client we did not write) against the real binary, SigV4-signed by botocore: the PS3.10 file
rebuilt from the metadata document and the stored frames is read by pydicom; every attribute of
the source file (except group 0002, Pixel Data and what HealthImaging does not keep) equals
pydicom's value; pixels equal the source's in Explicit VR Little Endian (decoded by Lightbox)
and as stored (`transfer-syntax=*`: HTJ2K fragments decoded by OpenJPEG and OpenJPH); File Meta
Information; single part and multipart; `?imageSetId=`; 404 / 406 / 400. Runs on both backends
(LIGHTBOX_TEST_BACKEND=embedded | postgres-s3)."""

import io
import shutil

import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.encaps import generate_frames, parse_basic_offsets

from conftest import module_server, SigV4
from test_dicomweb_wado import (error_of, pixel_bytes, split_multipart,
                                uids)
from test_image_set_reads import boto3_import, decode_htj2k, reference_pixels
from test_import import make_datastore

HTJ2K = "1.2.840.10008.1.2.4.202"
ELE = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
LIGHTBOX_CLASS_UID = "2.25.163018594431562829164216127838921702453"
# Signed 16-bit; signed 16-bit; RGB; 10 frames of 12 bits (multi-frame); RGB colour-by-plane;
# RGB kept as JPEG baseline (YBR_FULL_422, not transcodable).
CORPUS = ["CT_small.dcm", "MR_small.dcm", "SC_rgb.dcm", "emri_small.dcm", "color-pl.dcm",
          "SC_rgb_jpeg_dcmtk.dcm"]
TRANSCODED = ["CT_small.dcm", "MR_small.dcm", "SC_rgb.dcm", "emri_small.dcm", "color-pl.dcm"]
ELE_MEDIA = (("application/dicom", ELE),)


@pytest.fixture(scope="module")
def srv(tmp_path_factory, module_aws_env):  # noqa: F811
    server = module_server(tmp_path_factory, "instance-server")
    yield server
    server.kill()


@pytest.fixture(scope="module")
def store(srv, corpus, tmp_path_factory):
    """Job 1: the corpus files. Job 2: CT_small again with another AccessionNumber: a non-primary
    image set."""
    root = tmp_path_factory.mktemp("instance-store")
    ds = make_datastore(srv, "instance")
    files = {}
    for name in CORPUS:
        shutil.copy(corpus / name, root / name)
        files[name] = root / name
    placed, _ = boto3_import(srv, ds, "instance", files, "job1")
    conflict = root / "conflict"
    conflict.mkdir()
    ct = pydicom.dcmread(corpus / "CT_small.dcm")
    ct.AccessionNumber = "INSTANCECONFLICT"
    ct.save_as(conflict / "CT_small.dcm")
    placed2, _ = boto3_import(srv, ds, "instance", {"CT_small.dcm": conflict / "CT_small.dcm"}, "job2")
    assert placed2["CT_small.dcm"]["isPrimary"] is False
    return {"ds": ds, "placed": placed, "other": placed2["CT_small.dcm"]["imageSetId"], "files": files}


@pytest.fixture(scope="module")
def session():
    import requests

    s = requests.Session()
    s.auth = SigV4()
    return s


@pytest.fixture(scope="module")
def client(srv, store, session):
    return DICOMwebClient(url=f"{srv.url}/datastore/{store['ds']}", session=session)


def instance_url(srv, store, path, **params):
    study, series, sop = uids(path)
    url = f"{srv.url}/datastore/{store['ds']}/studies/{study}/series/{series}/instances/{sop}"
    if params:
        url += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    return url


# --- attribute comparison -----------------------------------------------------------------------


def same_value(got, want, vr):
    """pydicom values compared as pydicom reads them; text ignoring the padding PS3.5 allows."""
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        g = bytes(got or b"")
        w = bytes(want or b"")
        return g.rstrip(b"\0") == w.rstrip(b"\0")
    multi = (pydicom.multival.MultiValue, list, tuple)
    if isinstance(want, multi) or isinstance(got, multi):
        gl = list(got) if isinstance(got, multi) else [got]
        wl = list(want) if isinstance(want, multi) else [want]
        return len(gl) == len(wl) and all(same_value(g, w, vr) for g, w in zip(gl, wl))
    if vr in ("DS", "FL", "FD") and got not in (None, "") and want not in (None, ""):
        return float(got) == float(want)
    if vr == "IS" and got not in (None, "") and want not in (None, ""):
        return int(got) == int(want)
    if isinstance(want, str) or isinstance(got, str) or vr == "PN":
        return str(got or "").rstrip(" \0") == str(want or "").rstrip(" \0")
    return got == want


def compare_datasets(got, want, where=""):
    """Every element of `want` (recursively) is in `got` with an equal value. Returns the tags
    that differ, as readable strings (empty: all equal)."""
    problems = []
    for elem in want:
        tag = elem.tag
        if tag.group == 0x0002 or tag in (0x7FE00010, 0x7FE00008, 0x7FE00009):
            continue
        label = f"{where}{tag} {elem.keyword or 'private'}"
        if tag not in got:
            problems.append(f"{label}: missing")
            continue
        g = got[tag]
        if elem.VR == "SQ":
            if len(g.value) != len(elem.value):
                problems.append(f"{label}: {len(g.value)} items instead of {len(elem.value)}")
                continue
            for i, (gi, wi) in enumerate(zip(g.value, elem.value)):
                problems += compare_datasets(gi, wi, f"{label}[{i}].")
            continue
        if not same_value(g.value, elem.value, elem.VR):
            problems.append(f"{label}: values differ")
    return problems


def check_meta(got, ts):
    meta = got.file_meta
    assert meta.TransferSyntaxUID == ts
    assert meta.MediaStorageSOPClassUID == got.SOPClassUID
    assert meta.MediaStorageSOPInstanceUID == got.SOPInstanceUID
    assert meta.ImplementationClassUID == LIGHTBOX_CLASS_UID
    assert str(meta.ImplementationVersionName).startswith("LIGHTBOX")
    assert got.preamble == b"\0" * 128


def check_attributes(got, path):
    want = pydicom.dcmread(path)
    if got.file_meta.TransferSyntaxUID in (HTJ2K, J2K_LOSSLESS) and "PlanarConfiguration" in want:
        # PS3.5 8.2.4: 0 in JPEG 2000 / HTJ2K files, whatever the original's.
        assert got.PlanarConfiguration == 0
        del want.PlanarConfiguration
    problems = compare_datasets(got, want)
    assert not problems, (path.name, problems)


# --- tests --------------------------------------------------------------------------------------


def test_explicit_vr_little_endian(client, store):
    """dicomweb-client asking for ELE: attributes and pixels equal the source's."""
    for name in TRANSCODED:
        path = store["files"][name]
        got = client.retrieve_instance(*uids(path), media_types=ELE_MEDIA)
        check_meta(got, ELE)
        check_attributes(got, path)
        _, want = reference_pixels(path)
        arr = got.pixel_array
        if want.shape[0] == 1:
            arr = arr[None, ...]
        assert arr.shape == want.shape, (name, arr.shape, want.shape)
        assert np.array_equal(arr, want), name
        # The Pixel Data bytes are exactly the frames GetDICOMInstanceFrames transcodes.
        assert bytes(got.PixelData).rstrip(b"\0") == b"".join(pixel_bytes(path)).rstrip(b"\0"), name


def test_stored_transfer_syntax(client, store):
    """dicomweb-client's default (`transfer-syntax=*`): HTJ2K as stored, one fragment per frame
    with a filled Basic Offset Table; the fragments decoded by OpenJPEG and OpenJPH equal the
    source pixels, and so does pydicom's own decoding of the file."""
    for name in TRANSCODED:
        path = store["files"][name]
        got = client.retrieve_instance(*uids(path))
        check_meta(got, HTJ2K)
        check_attributes(got, path)
        _, want = reference_pixels(path)
        n = want.shape[0]
        data = got.PixelData
        offsets = parse_basic_offsets(data)
        assert len(offsets) == n and offsets[0] == 0, (name, offsets)
        frames = list(generate_frames(data, number_of_frames=n))
        assert len(frames) == n
        for i, frame in enumerate(frames):
            decoded = decode_htj2k(frame)
            ref = want[i]
            assert np.array_equal(decoded.reshape(ref.shape).astype(np.int64), ref.astype(np.int64)), (name, i)
        arr = got.pixel_array
        if n == 1:
            arr = arr[None, ...]
        assert np.array_equal(arr.astype(np.int64), want.astype(np.int64)), name


def test_single_part_and_multipart(srv, store, session):
    path = store["files"]["emri_small.dcm"]
    url = instance_url(srv, store, path)
    # No Accept: Explicit VR Little Endian, single part.
    for accept in (None, "application/dicom", f"application/dicom; transfer-syntax={ELE}", "*/*"):
        resp = session.get(url, headers={"Accept": accept} if accept else {})
        assert resp.status_code == 200, (accept, resp.text)
        assert resp.headers["Content-Type"] == f"application/dicom; transfer-syntax={ELE}", accept
        assert int(resp.headers["Content-Length"]) == len(resp.content)
        got = pydicom.dcmread(io.BytesIO(resp.content))
        check_meta(got, ELE)
        assert bytes(got.PixelData) == b"".join(pixel_bytes(path))
    # The stored syntax, single part.
    resp = session.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == f"application/dicom; transfer-syntax={HTJ2K}"
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    assert pydicom.dcmread(io.BytesIO(resp.content)).file_meta.TransferSyntaxUID == HTJ2K
    resp = session.get(url, headers={"Accept": f"application/dicom; transfer-syntax={HTJ2K}"})
    assert resp.status_code == 200
    # Multipart when asked.
    resp = session.get(url, headers={"Accept": f'multipart/related; type="application/dicom"; transfer-syntax={ELE}'})
    assert resp.status_code == 200, resp.text
    params, parts = split_multipart(resp)
    assert params["type"] == '"application/dicom"' and params["transfer-syntax"] == ELE
    assert len(parts) == 1
    assert parts[0][0]["Content-Type"] == f"application/dicom; transfer-syntax={ELE}"
    check_meta(pydicom.dcmread(io.BytesIO(parts[0][1])), ELE)
    # A list as OHIF-style clients send it: the first satisfiable entry (HTJ2K here).
    resp = session.get(url, headers={"Accept": "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50, "
                                               f"application/dicom; transfer-syntax={HTJ2K}, application/dicom"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == f"application/dicom; transfer-syntax={HTJ2K}"


def test_kept_jpeg_baseline(srv, store, session, client):
    """A JPEG baseline instance kept as stored: the default and `*` give the stored fragments;
    an explicit ELE request is 406."""
    path = store["files"]["SC_rgb_jpeg_dcmtk.dcm"]
    raw = pydicom.dcmread(path)
    stored = next(generate_frames(raw.PixelData, number_of_frames=1))
    for accept in (None, "application/dicom; transfer-syntax=*"):
        resp = session.get(instance_url(srv, store, path), headers={"Accept": accept} if accept else {})
        assert resp.status_code == 200, resp.text
        got = pydicom.dcmread(io.BytesIO(resp.content))
        check_meta(got, JPEG_BASELINE)
        check_attributes(got, path)
        frame = next(generate_frames(got.PixelData, number_of_frames=1))
        assert frame.rstrip(b"\0") == stored.rstrip(b"\0")
    resp = session.get(instance_url(srv, store, path), headers={"Accept": f"application/dicom; transfer-syntax={ELE}"})
    assert resp.status_code == 406, resp.text
    code, message = error_of(resp)
    assert code == "NotAcceptableException" and "transfer-syntax=*" in message


def test_non_primary_image_set(client, store, srv, session):
    path = store["files"]["CT_small.dcm"]
    study, series, sop = uids(path)
    got = client.retrieve_instance(study, series, sop, media_types=ELE_MEDIA,
                                   additional_params={"imageSetId": store["other"]})
    assert got.AccessionNumber == "INSTANCECONFLICT"
    assert bytes(got.PixelData) == b"".join(pixel_bytes(path))
    assert client.retrieve_instance(study, series, sop, media_types=ELE_MEDIA).AccessionNumber == ""
    mr = store["placed"]["MR_small.dcm"]["imageSetId"]
    for image_set in (mr, "0" * 32):
        resp = session.get(instance_url(srv, store, path, imageSetId=image_set))
        assert resp.status_code == 404, resp.text
        assert error_of(resp)[0] == "ResourceNotFoundException"
    resp = session.get(instance_url(srv, store, path, imageSetId="not-an-id"))
    assert resp.status_code == 400


def test_errors(srv, store, session):
    ds = store["ds"]
    study, series, sop = uids(store["files"]["CT_small.dcm"])
    mr_study, mr_series, _ = uids(store["files"]["MR_small.dcm"])
    base = f"{srv.url}/datastore/{ds}"
    secrets = {study, series, sop, mr_study, mr_series}
    for path in (f"/studies/{study}/series/{series}/instances/1.2.3",
                 f"/studies/1.2.3/series/{series}/instances/{sop}",
                 f"/studies/{mr_study}/series/{mr_series}/instances/{sop}"):
        resp = session.get(base + path)
        assert resp.status_code == 404, (path, resp.status_code, resp.text)
        code, message = error_of(resp)
        assert code == "ResourceNotFoundException", (path, code)
        assert not any(s in message for s in secrets), message
    resp = session.get(f"{srv.url}/datastore/{'0' * 32}/studies/{study}/series/{series}/instances/{sop}")
    assert resp.status_code == 404
    url = f"{base}/studies/{study}/series/{series}/instances/{sop}"
    for accept in (f"application/dicom; transfer-syntax={JPEG_BASELINE}", "image/jpeg",
                   "application/dicom+json", 'multipart/related; type="application/octet-stream"'):
        resp = session.get(url, headers={"Accept": accept})
        assert resp.status_code == 406, (accept, resp.text)
        code, message = error_of(resp)
        assert code == "NotAcceptableException" and "transfer-syntax=*" in message
        assert not any(s in message for s in secrets), message
    for bad in (f"/studies/{study}/series/{series}/instances/1.2.x",
                f"/studies/{study}/series/1..2/instances/{sop}"):
        resp = session.get(base + bad)
        assert resp.status_code == 400, (bad, resp.text)
        assert error_of(resp)[0] == "ValidationException"
    resp = session.get(url, headers={"Accept": "application/dicom; q=2"})
    assert resp.status_code == 400


def test_jpeg_2000_lossless_and_native_storage(srv, corpus, client, session, tmp_path):
    """A JPEG_2000_LOSSLESS data store: `*` gives JPEG 2000 Lossless files (pydicom decodes them
    to the source pixels), ELE the source pixels; a 1-bit segmentation (stored as Explicit VR
    Little Endian) comes back as such for both."""
    ds = make_datastore(srv, "instance-j2k", "JPEG_2000_LOSSLESS")
    files = {}
    for name in ("SC_rgb_2frame.dcm", "CT_small.dcm", "liver.dcm"):
        shutil.copy(corpus / name, tmp_path / name)
        files[name] = tmp_path / name
    boto3_import(srv, ds, "instance", files, "j2k")
    j2k = DICOMwebClient(url=f"{srv.url}/datastore/{ds}", session=session)
    stored_as = {"SC_rgb_2frame.dcm": "1.2.840.10008.1.2.4.90", "CT_small.dcm": "1.2.840.10008.1.2.4.90",
                 "liver.dcm": ELE}
    for name, path in files.items():
        _, want = reference_pixels(path)
        for media_types, ts in ((None, stored_as[name]), (ELE_MEDIA, ELE)):
            got = j2k.retrieve_instance(*uids(path), media_types=media_types)
            check_meta(got, ts)
            check_attributes(got, path)
            arr = got.pixel_array
            if want.shape[0] == 1:
                arr = arr[None, ...]
            assert np.array_equal(arr, want), (name, ts)
        if stored_as[name] == ELE:
            assert bytes(got.PixelData) == bytes(pydicom.dcmread(path).PixelData), name


def test_logs_carry_no_uids(srv, store):
    """After every request above (including the errors), the server's log names no UID."""
    log = srv.stderr_path.read_text(errors="replace")
    assert "GetDICOMInstance" in log
    for path in store["files"].values():
        for uid in uids(path):
            assert uid not in log
