"""DICOMweb WADO-RS retrieve (issue #8) with the `dicomweb-client` library (a client we did not
write) against the real binary, SigV4-signed by botocore: series and instance metadata (DICOM
JSON compared with pydicom's `to_json_dict` of the source files), frames as stored (HTJ2K, with
OHIF's exact Accept header, decoded by OpenJPEG / OpenJPH) and transcoded to Explicit VR Little
Endian (bytes equal to pydicom's pixels), several frames in the order asked, bulk data behind a
BulkDataURI, `?imageSetId=` for a non-primary image set, and the errors (404, 406, 400, 403).
Runs on both backends (LIGHTBOX_TEST_BACKEND=embedded | postgres-s3). One server and its imports
are shared by the module."""

import shutil
import time

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from conftest import module_server, SigV4
from test_image_set_reads import boto3_import, decode_htj2k, reference_pixels
from test_import import make_datastore

HTJ2K = "1.2.840.10008.1.2.4.202"
ELE = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
OHIF_ACCEPT = (
    "multipart/related; type=image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202, "
    "multipart/related; type=image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90, "
    "multipart/related; type=image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50, "
    "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
)
ELE_MEDIA = (("application/octet-stream", ELE),)
# Signed 16-bit; signed 16-bit; RGB; RGB kept as JPEG baseline (YBR_FULL_422); 10 frames of 12 bits;
# RGB colour-by-plane.
CORPUS = ["CT_small.dcm", "MR_small.dcm", "SC_rgb.dcm", "SC_rgb_jpeg_dcmtk.dcm", "emri_small.dcm", "color-pl.dcm"]
# A JPEG_2000_LOSSLESS data store: 16-bit, 2 RGB frames, colour-by-plane.
J2K_CORPUS = ["CT_small.dcm", "SC_rgb_2frame.dcm", "color-pl.dcm"]
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
BULK_SIZE = (1 << 20) + 12346  # even: OB values are padded to even length
# Attributes compared with pydicom's DICOM JSON.
KEY_TAGS = ["00080016", "00080018", "00080020", "00080060", "00100010", "00100020", "0020000D", "0020000E",
            "00200013", "00280002", "00280004", "00280010", "00280011", "00280100", "00280101", "00280103"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory, module_aws_env):
    server = module_server(tmp_path_factory, "wado-server")
    yield server
    server.kill()


@pytest.fixture(scope="module")
def store(srv, corpus, tmp_path_factory):
    """Job 1: the corpus files, plus a second MR instance (InstanceNumber 2, a private OB value
    over 1 MiB). Job 2: CT_small again with another AccessionNumber: a non-primary image set."""
    root = tmp_path_factory.mktemp("wado-store")
    ds = make_datastore(srv, "wado")
    files = {}
    for name in CORPUS:
        shutil.copy(corpus / name, root / name)
        files[name] = root / name
    mr2 = pydicom.dcmread(corpus / "MR_small.dcm")
    mr2.SOPInstanceUID = mr2.SOPInstanceUID + ".2"
    mr2.file_meta.MediaStorageSOPInstanceUID = mr2.SOPInstanceUID
    mr2.InstanceNumber = "2"
    block = mr2.private_block(0x0009, "LIGHTBOX WADO TEST", create=True)
    bulk = bytes((i * 7 + 3) % 251 for i in range(BULK_SIZE))
    block.add_new(0x01, "OB", bulk)
    mr2.save_as(root / "MR_small_2.dcm")
    files["MR_small_2.dcm"] = root / "MR_small_2.dcm"
    placed, _ = boto3_import(srv, ds, "wado", files, "job1")

    conflict_dir = root / "conflict"
    conflict_dir.mkdir()
    ct = pydicom.dcmread(corpus / "CT_small.dcm")
    ct.AccessionNumber = "WADOCONFLICT"
    ct.save_as(conflict_dir / "CT_small.dcm")
    placed2, _ = boto3_import(srv, ds, "wado", {"CT_small.dcm": conflict_dir / "CT_small.dcm"}, "job2")
    assert placed2["CT_small.dcm"]["isPrimary"] is False
    other = placed2["CT_small.dcm"]["imageSetId"]
    assert other != placed["CT_small.dcm"]["imageSetId"]
    return {"ds": ds, "placed": placed, "other": other, "files": files, "bulk": bulk, "mr2": mr2}


@pytest.fixture(scope="module")
def session():
    s = requests.Session()
    s.auth = SigV4()
    return s


@pytest.fixture(scope="module")
def client(srv, store, session):
    return DICOMwebClient(url=f"{srv.url}/datastore/{store['ds']}", session=session)


def uids(path):
    d = pydicom.dcmread(path, stop_before_pixels=True)
    return str(d.StudyInstanceUID), str(d.SeriesInstanceUID), str(d.SOPInstanceUID)


def frames_url(srv, store, path, frames, **params):
    study, series, sop = uids(path)
    url = f"{srv.url}/datastore/{store['ds']}/studies/{study}/series/{series}/instances/{sop}/frames/{frames}"
    if params:
        url += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    return url


def split_multipart(resp):
    """(outer content type parameters, [(part headers, body)]) of a multipart/related response."""
    ct = resp.headers["Content-Type"]
    media, *params = [p.strip() for p in ct.split(";")]
    assert media == "multipart/related", ct
    params = dict(p.split("=", 1) for p in params)
    boundary = params["boundary"].strip('"').encode()
    body = resp.content
    chunks = body.split(b"--" + boundary)
    assert chunks[-1].startswith(b"--"), "close delimiter"
    parts = []
    for chunk in chunks[1:-1]:
        assert chunk.startswith(b"\r\n")
        head, _, content = chunk[2:].partition(b"\r\n\r\n")
        assert content.endswith(b"\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((headers, content[:-2]))
    return params, parts


def pixel_bytes(path):
    """pydicom's native pixels, one bytes object per frame (PS3.5 8.2 layout)."""
    src, arr = reference_pixels(path)
    signed = int(src.PixelRepresentation) == 1
    dtype = {8: "u1", 16: "<u2", 32: "<u4"}[int(src.BitsAllocated)]
    if signed:
        dtype = dtype.replace("u", "i")
    if int(src.SamplesPerPixel) > 1 and int(src.get("PlanarConfiguration", 0) or 0) == 1:
        arr = np.moveaxis(arr, -1, 1)  # colour by plane
    return [np.ascontiguousarray(f).astype(dtype).tobytes() for f in arr]


def error_of(resp):
    return resp.headers.get("x-amzn-ErrorType"), resp.json().get("message", "")


# --- metadata -----------------------------------------------------------------------------------


def compare_key_attributes(got, path):
    want = pydicom.dcmread(path, stop_before_pixels=True).to_json_dict()
    for tag in KEY_TAGS:
        if tag not in want:
            continue
        w = want[tag]
        assert tag in got, tag
        assert got[tag]["vr"] == w["vr"], (tag, got[tag], w)
        assert got[tag].get("Value") == w.get("Value"), (tag, got[tag], w)
    assert "7FE00010" not in got
    assert got["00020010"] == {"vr": "UI", "Value": [HTJ2K]}


def test_series_metadata(client, store):
    study, series, _ = uids(store["files"]["MR_small.dcm"])
    items = client.retrieve_series_metadata(study, series)
    assert [i["00200013"]["Value"] for i in items] == [[1], [2]]
    compare_key_attributes(items[0], store["files"]["MR_small.dcm"])
    compare_key_attributes(items[1], store["files"]["MR_small_2.dcm"])
    # The private OB value over 1 MiB is a BulkDataURI; the client fetches it.
    bulk = items[1]["00091001"]
    assert bulk["vr"] == "OB" and "InlineBinary" not in bulk and "Value" not in bulk
    uri = bulk["BulkDataURI"]
    assert uri.startswith(f"{client.base_url}/studies/{study}/series/{series}/instances/"
                          f"{items[1]['00080018']['Value'][0]}/bulkdata/"), uri
    assert client.retrieve_bulkdata(uri) == [store["bulk"]]
    # Small binary values stay inline.
    assert "BulkDataURI" not in str(items[0])


def test_instance_metadata(client, store, session):
    for name in ("CT_small.dcm", "SC_rgb.dcm", "emri_small.dcm"):
        study, series, sop = uids(store["files"][name])
        got = client.retrieve_instance_metadata(study, series, sop)
        compare_key_attributes(got, store["files"][name])
    # The response is an application/dicom+json array.
    study, series, sop = uids(store["files"]["CT_small.dcm"])
    resp = session.get(f"{client.base_url}/studies/{study}/series/{series}/instances/{sop}/metadata",
                       headers={"Accept": "application/dicom+json"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/dicom+json"
    body = resp.json()
    assert isinstance(body, list) and len(body) == 1
    assert body[0]["00080050"] == {"vr": "SH"}, "the primary image set's empty AccessionNumber"
    # The same bulk data as a single application/octet-stream part when asked so.
    _, series_uid, _ = uids(store["files"]["MR_small_2.dcm"])
    item = client.retrieve_instance_metadata(*uids(store["files"]["MR_small_2.dcm"]))
    resp = session.get(item["00091001"]["BulkDataURI"], headers={"Accept": "application/octet-stream"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.content == store["bulk"]


# --- frames -------------------------------------------------------------------------------------


def test_frames_with_ohif_accept_are_stored_htj2k(srv, store, session):
    for name in ("CT_small.dcm", "SC_rgb.dcm", "emri_small.dcm"):
        path = store["files"][name]
        _, ref = reference_pixels(path)
        n = ref.shape[0]
        resp = session.get(frames_url(srv, store, path, ",".join(str(i) for i in range(1, n + 1))),
                           headers={"Accept": OHIF_ACCEPT})
        assert resp.status_code == 200, resp.text
        params, parts = split_multipart(resp)
        assert params["type"] == '"image/jphc"' and params["transfer-syntax"] == HTJ2K, resp.headers
        assert len(parts) == n
        for i, (headers, data) in enumerate(parts):
            assert headers["Content-Type"] == f"image/jphc; transfer-syntax={HTJ2K}"
            got = decode_htj2k(data)
            assert np.array_equal(got.reshape(ref[i].shape), ref[i]), (name, i)


def test_frames_transcoded_to_explicit_vr_little_endian(client, store):
    # The colour-by-plane file's pixels are its raw Pixel Data.
    raw = pydicom.dcmread(store["files"]["color-pl.dcm"]).PixelData
    assert pixel_bytes(store["files"]["color-pl.dcm"]) == [raw]
    for name in ("CT_small.dcm", "MR_small.dcm", "SC_rgb.dcm", "emri_small.dcm", "color-pl.dcm"):
        path = store["files"][name]
        want = pixel_bytes(path)
        got = client.retrieve_instance_frames(*uids(path), frame_numbers=list(range(1, len(want) + 1)),
                                              media_types=ELE_MEDIA)
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, (name, i, len(g), len(w))


def test_several_frames_in_the_order_asked(srv, store, session, client):
    path = store["files"]["emri_small.dcm"]
    want = pixel_bytes(path)
    order = [7, 2, 10, 1]
    resp = session.get(frames_url(srv, store, path, ",".join(map(str, order))),
                       headers={"Accept": f"multipart/related; type=application/octet-stream; transfer-syntax={ELE}"})
    assert resp.status_code == 200, resp.text
    params, parts = split_multipart(resp)
    assert resp.headers["Content-Type"].startswith(
        f'multipart/related; type="application/octet-stream"; transfer-syntax={ELE}; boundary='), resp.headers
    assert [p[1] for p in parts] == [want[i - 1] for i in order]
    assert all(h["Content-Type"] == f"application/octet-stream; transfer-syntax={ELE}" for h, _ in parts)
    # The library's default Accept (no transfer syntax): Explicit VR Little Endian too.
    assert client.retrieve_instance_frames(*uids(path), frame_numbers=[3]) == [want[2]]


def test_transfer_syntax_star_and_kept_jpeg(srv, store, session):
    path = store["files"]["SC_rgb_jpeg_dcmtk.dcm"]
    raw = pydicom.dcmread(path)
    stored = next(pydicom.encaps.generate_frames(raw.PixelData, number_of_frames=1))
    # Kept JPEG baseline: sent as stored for `*` and for the default (it cannot be transcoded
    # to samples matching its YBR attributes) ...
    for accept in ("multipart/related; type=application/octet-stream; transfer-syntax=*",
                   "multipart/related; type=application/octet-stream", OHIF_ACCEPT):
        resp = session.get(frames_url(srv, store, path, "1"), headers={"Accept": accept})
        assert resp.status_code == 200, (accept, resp.text)
        params, parts = split_multipart(resp)
        assert params["transfer-syntax"] == JPEG_BASELINE
        assert parts[0][0]["Content-Type"] == f"image/jpeg; transfer-syntax={JPEG_BASELINE}"
        assert parts[0][1].rstrip(b"\0") == stored.rstrip(b"\0")
    # ... and an explicit ELE request is not acceptable.
    resp = session.get(frames_url(srv, store, path, "1"),
                       headers={"Accept": f"multipart/related; type=application/octet-stream; transfer-syntax={ELE}"})
    assert resp.status_code == 406, resp.text
    code, message = error_of(resp)
    assert code == "NotAcceptableException" and "transfer-syntax=*" in message


def test_non_primary_image_set(client, store, srv, session):
    path = store["files"]["CT_small.dcm"]
    study, series, sop = uids(path)
    other = {"imageSetId": store["other"]}
    got = client.retrieve_instance_metadata(study, series, sop, additional_params=other)
    assert got["00080050"]["Value"] == ["WADOCONFLICT"]
    items = client.retrieve_series_metadata(study, series, additional_params=other)
    assert [i["00080050"]["Value"] for i in items] == [["WADOCONFLICT"]]
    assert "Value" not in client.retrieve_instance_metadata(study, series, sop)["00080050"]
    frames = client.retrieve_instance_frames(study, series, sop, frame_numbers=[1], media_types=ELE_MEDIA,
                                             additional_params=other)
    assert frames == pixel_bytes(path)
    # The primary image set's id works too; an image set of another series does not.
    primary = store["placed"]["CT_small.dcm"]["imageSetId"]
    resp = session.get(frames_url(srv, store, path, "1", imageSetId=primary))
    assert resp.status_code == 200
    mr = store["placed"]["MR_small.dcm"]["imageSetId"]
    for image_set in (mr, "0" * 32):
        resp = session.get(frames_url(srv, store, path, "1", imageSetId=image_set))
        assert resp.status_code == 404, resp.text
        assert error_of(resp)[0] == "ResourceNotFoundException"
    resp = session.get(frames_url(srv, store, path, "1", imageSetId="not-an-id"))
    assert resp.status_code == 400


# --- errors -------------------------------------------------------------------------------------


def test_not_found(srv, store, session):
    ds = store["ds"]
    study, series, sop = uids(store["files"]["CT_small.dcm"])
    mr_study, mr_series, _ = uids(store["files"]["MR_small.dcm"])
    base = f"{srv.url}/datastore/{ds}"
    secrets = {study, series, sop, mr_study, mr_series}
    for path in (f"/studies/1.2.3/series/{series}/metadata",
                 f"/studies/{study}/series/1.2.3/metadata",
                 f"/studies/{mr_study}/series/{series}/metadata",
                 f"/studies/{study}/series/{series}/instances/1.2.3/metadata",
                 f"/studies/{study}/series/{series}/instances/1.2.3/frames/1",
                 f"/studies/{study}/series/{series}/instances/{sop}/bulkdata/0123456789abcdef",
                 f"/studies/{mr_study}/series/{mr_series}/instances/{sop}/frames/1"):
        resp = session.get(base + path)
        assert resp.status_code == 404, (path, resp.status_code, resp.text)
        code, message = error_of(resp)
        assert code == "ResourceNotFoundException", (path, code)
        assert not any(s in message for s in secrets), message
    resp = session.get(f"{srv.url}/datastore/{'0' * 32}/studies/{study}/series/{series}/metadata")
    assert resp.status_code == 404
    assert "Datastore" in error_of(resp)[1]


def test_bad_frame_lists_and_accept(srv, store, session):
    path = store["files"]["emri_small.dcm"]
    for frames in ("0", "1,1", "a", "1,,2", "11", "2,99", "1.5", "-1"):
        resp = session.get(frames_url(srv, store, path, frames))
        assert resp.status_code == 400, (frames, resp.status_code, resp.text)
        assert error_of(resp)[0] == "ValidationException"
    resp = session.get(frames_url(srv, store, path, "11"))
    assert "Frame 11" in error_of(resp)[1]
    # Malformed Accept: 400. Nothing acceptable: 406.
    resp = session.get(frames_url(srv, store, path, "1"), headers={"Accept": "multipart/related; q=2"})
    assert resp.status_code == 400, resp.text
    for accept in ("multipart/related; type=image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50",
                   "image/jphc", "application/dicom+json"):
        resp = session.get(frames_url(srv, store, path, "1"), headers={"Accept": accept})
        assert resp.status_code == 406, (accept, resp.text)
        code, message = error_of(resp)
        assert code == "NotAcceptableException" and "transfer-syntax=*" in message
    study, series, _ = uids(path)
    resp = session.get(f"{srv.url}/datastore/{store['ds']}/studies/{study}/series/{series}/metadata",
                       headers={"Accept": "application/dicom+xml"})
    assert resp.status_code == 406
    resp = session.get(f"{srv.url}/datastore/{store['ds']}/studies/{study}/series/1.2.x/metadata")
    assert resp.status_code == 400


def test_unsigned_request_is_refused(srv, store):
    path = store["files"]["CT_small.dcm"]
    resp = requests.get(frames_url(srv, store, path, "1"))
    assert resp.status_code == 403, resp.text
    study, series, _ = uids(path)
    resp = requests.get(f"{srv.url}/datastore/{store['ds']}/studies/{study}/series/{series}/metadata")
    assert resp.status_code == 403


def test_jpeg_2000_lossless_data_store(srv, corpus, session, tmp_path):
    ds = make_datastore(srv, "wado-j2k", "JPEG_2000_LOSSLESS")
    files = {}
    for name in J2K_CORPUS:
        shutil.copy(corpus / name, tmp_path / name)
        files[name] = tmp_path / name
    boto3_import(srv, ds, "wado", files, "j2k")
    client = DICOMwebClient(url=f"{srv.url}/datastore/{ds}", session=session)
    for name, path in files.items():
        want = pixel_bytes(path)
        study, series, sop = uids(path)
        frames = list(range(1, len(want) + 1))
        assert client.retrieve_instance_frames(study, series, sop, frame_numbers=frames[::-1],
                                               media_types=ELE_MEDIA) == want[::-1], name
        # OHIF's list: JPEG 2000 (listed before ELE) as stored.
        url = (f"{srv.url}/datastore/{ds}/studies/{study}/series/{series}/instances/{sop}/frames/"
               + ",".join(map(str, frames)))
        resp = session.get(url, headers={"Accept": OHIF_ACCEPT})
        assert resp.status_code == 200, resp.text
        params, parts = split_multipart(resp)
        assert params["type"] == '"image/jp2"' and params["transfer-syntax"] == J2K_LOSSLESS
        assert [h["Content-Type"] for h, _ in parts] == [f"image/jp2; transfer-syntax={J2K_LOSSLESS}"] * len(want)
        assert all(data[:4] == b"\xff\x4f\xff\x51" for _, data in parts), "J2K codestreams"
        meta = client.retrieve_instance_metadata(study, series, sop)
        assert meta["00020010"]["Value"] == [J2K_LOSSLESS]


def test_deleted_image_set_is_not_found(srv, store, session, client):
    """Last: deletes the non-primary image set."""
    path = store["files"]["CT_small.dcm"]
    mi = srv.client()
    mi.delete_image_set(datastoreId=store["ds"], imageSetId=store["other"])
    deadline = time.monotonic() + 30
    while mi.get_image_set(datastoreId=store["ds"], imageSetId=store["other"])["imageSetState"] != "DELETED":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for url in (frames_url(srv, store, path, "1", imageSetId=store["other"]),
                frames_url(srv, store, path, "1", imageSetId=store["other"]).replace("/frames/1", "/metadata")):
        resp = session.get(url)
        assert resp.status_code == 404, resp.text
        assert "DELETED" in error_of(resp)[1]
    # The primary image set is still served.
    assert client.retrieve_instance_frames(*uids(path), frame_numbers=[1], media_types=ELE_MEDIA) == pixel_bytes(path)


def test_logs_carry_no_uids(srv, store):
    """After every request above (including the errors), the server's log names no UID."""
    log = srv.stderr_path.read_text(errors="replace")
    assert "GetDICOMInstanceFrames" in log
    for path in store["files"].values():
        for uid in uids(path):
            assert uid not in log
