"""DICOMweb STOW-RS (StoreDICOM, StoreDICOMStudy; issue #8) with the `dicomweb-client` library's
`store_instances` (a client we did not write) and raw requests against the real binary, SigV4-signed
with `x-amz-content-sha256` (the body's SHA-256, or UNSIGNED-PAYLOAD for the library's chunked
bodies): real corpus files stored, found with boto3's SearchImageSets and their frames retrieved
through WADO-RS equal to pydicom's pixels; a new version (IMPORTED) of an existing primary image set;
a conflicting grouping element -> a non-primary image set; an instance of another study ->
FailedSOPSequence 0xA900 and 409 while the others are stored; bad requests (malformed multipart,
wrong boundary, wrong Content-Type, no parts, non-DICOM parts, an oversized part, a body over the
limit, unsigned or wrongly hashed bodies) get their status and leave nothing half-stored (no new
image set, no new blob, no pending blob); a server killed mid-request is recovered after a restart
(the request's job lease expires: its pending blobs are deleted). Runs on both backends
(LIGHTBOX_TEST_BACKEND)."""

import glob
import http.client
import time
import hashlib
import os
import urllib.parse

import pydicom
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from dicomweb_client.api import DICOMwebClient

from conftest import module_server, SigV4
from test_dicomweb_wado import ELE_MEDIA, pixel_bytes, uids
from test_import import blob_root, catalog_rows, make_datastore

CORPUS = ["CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "SC_rgb.dcm"]
MAX_PART = 1 << 20  # --import-max-file-bytes for this module's server
MAX_BODY = 3 << 20  # --stow-max-body-bytes
DICOM_JSON = "application/dicom+json"
IDLE_SECS = 2  # --body-timeout-secs: the longest wait for the next piece of a STOW-RS body


@pytest.fixture(scope="module")
def srv(tmp_path_factory, module_aws_env):  # noqa: F811
    server = module_server(tmp_path_factory, "stow-server", env={"LIGHTBOX_IMPORT_MAX_FILE_BYTES": str(MAX_PART),
                                       "LIGHTBOX_STOW_MAX_BODY_BYTES": str(MAX_BODY),
                                       "LIGHTBOX_BODY_TIMEOUT_SECS": str(IDLE_SECS)})
    yield server
    server.kill()


@pytest.fixture(scope="module")
def ds(srv):
    return make_datastore(srv, "stow")


@pytest.fixture(scope="module")
def session():
    s = requests.Session()
    s.auth = SigV4()
    return s


def client_for(srv, ds, session, **kw):
    return DICOMwebClient(url=f"{srv.url}/datastore/{ds}", session=session, **kw)


def read(path):
    return pydicom.dcmread(path)


def to_bytes(dataset):
    import io

    buf = io.BytesIO()
    dataset.save_as(buf)
    return buf.getvalue()


def variant(corpus, name, suffix, **changes):
    """A corpus file with a new SOP Instance UID (and other attributes changed)."""
    d = read(corpus / name)
    d.SOPInstanceUID = d.SOPInstanceUID + suffix
    d.file_meta.MediaStorageSOPInstanceUID = d.SOPInstanceUID
    for k, v in changes.items():
        setattr(d, k, v)
    return d


def multipart(parts, boundary="stowtestboundary", close=True):
    """A multipart/related body of (content type, bytes) parts."""
    out = b""
    for ct, data in parts:
        out += f"--{boundary}\r\nContent-Type: {ct}\r\n\r\n".encode() + data + b"\r\n"
    if close:
        out += f"--{boundary}--\r\n".encode()
    return out


def post(session, srv, ds, body, study=None, content_type=None, boundary="stowtestboundary", **kw):
    url = f"{srv.url}/datastore/{ds}/studies" + (f"/{study}" if study else "")
    ct = content_type or f'multipart/related; type="application/dicom"; boundary={boundary}'
    return session.post(url, data=body, headers={"Content-Type": ct, "Accept": DICOM_JSON}, **kw)


def image_sets(srv, ds):
    mi = srv.client()
    out, token = [], None
    while True:
        kw = {"datastoreId": ds, "maxResults": 50}
        if token:
            kw["nextToken"] = token
        page = mi.search_image_sets(**kw)
        out += page["imageSetsMetadataSummaries"]
        token = page.get("nextToken")
        if not token:
            return out


def snapshot(srv, ds):
    blobs = sorted(glob.glob(str(blob_root(srv) / "datastores" / ds / "**" / "*"), recursive=True))
    return (len(image_sets(srv, ds)), [os.path.relpath(b, blob_root(srv)) for b in blobs])


def assert_nothing_pending(srv):
    assert catalog_rows(srv, "SELECT COUNT(*) FROM pending_blobs") == [(0,)]
    assert catalog_rows(srv, "SELECT COUNT(*) FROM image_set_versions WHERE state = 'LOCKED'") == [(0,)]


def seq(resp_json, tag):
    return resp_json.get(tag, {}).get("Value", [])


def value(item, tag):
    return item[tag]["Value"][0]


def search_study(srv, ds, study):
    mi = srv.client()
    return mi.search_image_sets(datastoreId=ds, searchCriteria={"filters": [
        {"values": [{"DICOMStudyInstanceUID": study}], "operator": "EQUAL"}]})["imageSetsMetadataSummaries"]


# --- stored and retrieved -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(srv, ds, session, corpus):
    """The corpus stored in two requests: a signed body (SHA-256) and a chunked one
    (UNSIGNED-PAYLOAD, the library's chunked transfer encoding)."""
    datasets = {name: read(corpus / name) for name in CORPUS}
    first = client_for(srv, ds, session).store_instances([datasets["CT_small.dcm"], datasets["MR_small.dcm"]])
    second = client_for(srv, ds, session, chunk_size=16 * 1024).store_instances(
        [datasets["emri_small.dcm"], datasets["SC_rgb.dcm"]])
    return {"responses": [first, second], "datasets": datasets}


def test_store_corpus_and_retrieve(srv, ds, session, corpus, stored):
    refs = [r for resp in stored["responses"] for r in resp.ReferencedSOPSequence]
    assert [str(r.ReferencedSOPInstanceUID) for r in refs] == [
        str(stored["datasets"][n].SOPInstanceUID) for n in CORPUS]
    for r, name in zip(refs, CORPUS):
        d = stored["datasets"][name]
        assert r.ReferencedSOPClassUID == d.SOPClassUID
        study, series, sop = uids(corpus / name)
        assert r.RetrieveURL == f"{srv.url}/datastore/{ds}/studies/{study}/series/{series}/instances/{sop}"
    for resp in stored["responses"]:
        assert "FailedSOPSequence" not in resp
    # Found by boto3, as CREATED primary image sets.
    for name in CORPUS:
        study, _, _ = uids(corpus / name)
        found = search_study(srv, ds, study)
        assert len(found) >= 1, name
        assert found[0]["DICOMTags"]["DICOMStudyInstanceUID"] == study
    client = client_for(srv, ds, session)
    for name in CORPUS:
        path = corpus / name
        want = pixel_bytes(path)
        got = client.retrieve_instance_frames(*uids(path), frame_numbers=list(range(1, len(want) + 1)),
                                              media_types=ELE_MEDIA)
        assert len(got) == len(want), name
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, (name, i)
    assert_nothing_pending(srv)


def test_raw_response_module(srv, ds, session, corpus, stored):
    """The response as sent: application/dicom+json, 200, the study's RetrieveURL."""
    mr = variant(corpus, "MR_small.dcm", ".77")
    resp = post(session, srv, ds, multipart([("application/dicom", to_bytes(mr))]))
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == DICOM_JSON
    body = resp.json()
    assert body["00081190"] == {"vr": "UR", "Value": [f"{srv.url}/datastore/{ds}/studies/{mr.StudyInstanceUID}"]}
    (item,) = seq(body, "00081199")
    assert item["00081150"] == {"vr": "UI", "Value": [str(mr.SOPClassUID)]}
    assert item["00081155"] == {"vr": "UI", "Value": [str(mr.SOPInstanceUID)]}
    assert "00081198" not in body


def test_store_into_existing_primary(srv, ds, session, corpus, stored):
    study, series, _ = uids(corpus / "CT_small.dcm")
    before = search_study(srv, ds, study)
    (primary,) = [s for s in before if s.get("isPrimary", True) and s["version"] >= 1]
    ct2 = variant(corpus, "CT_small.dcm", ".2", InstanceNumber="2")
    resp = client_for(srv, ds, session).store_instances([ct2])
    assert str(resp.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) == str(ct2.SOPInstanceUID)
    mi = srv.client()
    got = mi.get_image_set(datastoreId=ds, imageSetId=primary["imageSetId"])
    assert got["versionId"] == str(int(primary["version"]) + 1)
    assert got["imageSetWorkflowStatus"] == "IMPORTED"
    assert len(search_study(srv, ds, study)) == len(before)
    # Both instances in the series, the new one's frames retrievable.
    client = client_for(srv, ds, session)
    sops = {str(i["00080018"]["Value"][0]) for i in client.retrieve_series_metadata(study, series)}
    assert {str(stored["datasets"]["CT_small.dcm"].SOPInstanceUID), str(ct2.SOPInstanceUID)} <= sops
    assert client.retrieve_instance_frames(study, series, str(ct2.SOPInstanceUID), frame_numbers=[1],
                                           media_types=ELE_MEDIA) == pixel_bytes(corpus / "CT_small.dcm")


def test_conflicting_grouping_element_is_non_primary(srv, ds, session, corpus, stored):
    study, series, _ = uids(corpus / "CT_small.dcm")
    before = {s["imageSetId"] for s in search_study(srv, ds, study)}
    ct3 = variant(corpus, "CT_small.dcm", ".3", AccessionNumber="STOWCONFLICT")
    resp = post(session, srv, ds, multipart([("application/dicom", to_bytes(ct3))]))
    assert resp.status_code == 200, resp.text
    (item,) = seq(resp.json(), "00081199")
    url = value(item, "00081190")
    assert "?imageSetId=" in url
    new_id = url.split("?imageSetId=")[1]
    after = {s["imageSetId"]: s for s in search_study(srv, ds, study)}
    assert set(after) == before | {new_id}
    got = srv.client().get_image_set(datastoreId=ds, imageSetId=new_id)
    assert got["versionId"] == "1" and got["imageSetWorkflowStatus"] == "CREATED"
    assert got.get("isPrimary") is False
    frames = session.get(url.replace("?", "/frames/1?"),
                         headers={"Accept": "multipart/related; type=application/octet-stream; "
                                            "transfer-syntax=1.2.840.10008.1.2.1"})
    assert frames.status_code == 200, frames.text


def test_store_study_with_an_instance_of_another_study(srv, ds, session, corpus, stored):
    mr = variant(corpus, "MR_small.dcm", ".5")
    ct = variant(corpus, "CT_small.dcm", ".5")
    before = snapshot(srv, ds)
    body = multipart([("application/dicom", to_bytes(mr)), ("application/dicom", to_bytes(ct))])
    resp = post(session, srv, ds, body, study=str(mr.StudyInstanceUID))
    assert resp.status_code == 409, resp.text
    assert resp.headers["Content-Type"] == DICOM_JSON
    out = resp.json()
    (failed,) = seq(out, "00081198")
    assert value(failed, "00081197") == 0xA900
    assert value(failed, "00081155") == str(ct.SOPInstanceUID)
    assert value(failed, "00081150") == str(ct.SOPClassUID)
    (ok,) = seq(out, "00081199")
    assert value(ok, "00081155") == str(mr.SOPInstanceUID)
    assert out["00081190"]["Value"][0].endswith(f"/studies/{mr.StudyInstanceUID}")
    # The MR instance is there, the CT one is not, and no blob of the CT instance is left.
    client = client_for(srv, ds, session)
    md = client.retrieve_instance_metadata(*uids(corpus / "MR_small.dcm")[:2], str(mr.SOPInstanceUID))
    assert md["00080018"]["Value"] == [str(mr.SOPInstanceUID)]
    r = session.get(f"{srv.url}/datastore/{ds}/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}"
                    f"/instances/{ct.SOPInstanceUID}/metadata", headers={"Accept": DICOM_JSON})
    assert r.status_code == 404
    after = snapshot(srv, ds)
    assert after[0] == before[0]
    new_frames = [b for b in set(after[1]) - set(before[1]) if "/frames/" in b]
    assert len(new_frames) == 1  # the MR frame only
    assert_nothing_pending(srv)


def test_library_raises_on_409(srv, ds, session, corpus, stored):
    ct = variant(corpus, "CT_small.dcm", ".6")
    with pytest.raises(requests.HTTPError) as e:
        client_for(srv, ds, session).store_instances([ct], study_instance_uid="1.2.3.4")
    assert e.value.response.status_code == 409


# --- bad requests: right status, nothing half-stored -------------------------------------------


def assert_unchanged(srv, ds, before):
    assert snapshot(srv, ds) == before
    assert_nothing_pending(srv)


def test_bad_requests_store_nothing(srv, ds, session, corpus, stored):
    good = to_bytes(variant(corpus, "CT_small.dcm", ".9"))
    before = snapshot(srv, ds)
    cases = [
        # malformed: no close delimiter (after a valid part: its frames must not stay)
        (multipart([("application/dicom", good)], close=False), {}, 400),
        # a delimiter followed by garbage
        (b"--stowtestboundary\r\nContent-Type: application/dicom\r\n\r\n" + good
         + b"\r\n--stowtestboundaryXX", {}, 400),
        # wrong boundary: the body's boundary is not the Content-Type's
        (multipart([("application/dicom", good)], boundary="other"), {}, 400),
        # wrong Content-Type
        (good, {"content_type": "application/dicom"}, 400),
        (multipart([("application/dicom", good)]), {"content_type": "multipart/related; type=\"application/dicom\""}, 400),
        (multipart([("application/dicom", good)]),
         {"content_type": 'multipart/related; type="application/dicom+json"; boundary=stowtestboundary'}, 400),
        # no parts
        (b"--stowtestboundary--\r\n", {}, 400),
    ]
    for body, kw, status in cases:
        resp = post(session, srv, ds, body, **kw)
        assert resp.status_code == status, (kw, resp.status_code, resp.text)
        assert_unchanged(srv, ds, before)


def test_non_dicom_parts_fail(srv, ds, session, corpus, stored):
    before = snapshot(srv, ds)
    body = multipart([("application/dicom", b"this is not DICOM at all" * 10),
                      ("text/plain", b"hello"),
                      ("application/dicom", b"")])
    resp = post(session, srv, ds, body)
    assert resp.status_code == 409, resp.text
    out = resp.json()
    assert [value(f, "00081197") for f in seq(out, "00081198")] == [0xC000, 0xC000, 0xC000]
    assert "00081199" not in out
    assert_unchanged(srv, ds, before)


def test_oversized_part(srv, ds, session, corpus, stored):
    before = snapshot(srv, ds)
    big = read(corpus / "CT_small.dcm")
    big.SOPInstanceUID = big.SOPInstanceUID + ".10"
    big.file_meta.MediaStorageSOPInstanceUID = big.SOPInstanceUID
    block = big.private_block(0x0009, "LIGHTBOX STOW TEST", create=True)
    block.add_new(0x01, "OB", b"\0" * (MAX_PART + 1024))
    resp = post(session, srv, ds, multipart([("application/dicom", to_bytes(big))]))
    assert resp.status_code == 409, resp.text
    (failed,) = seq(resp.json(), "00081198")
    assert value(failed, "00081197") == 0xA700
    assert_unchanged(srv, ds, before)


def test_body_over_the_limit(srv, ds, session, corpus, stored):
    before = snapshot(srv, ds)
    good = to_bytes(variant(corpus, "CT_small.dcm", ".11"))
    filler = b"\0" * (MAX_PART - 4096)
    body = multipart([("application/dicom", good)] + [("application/dicom", filler)] * 4)
    assert len(body) > MAX_BODY
    # With Content-Length: refused before reading.
    resp = post(session, srv, ds, body)
    assert resp.status_code == 413, resp.text
    assert_unchanged(srv, ds, before)
    # Chunked (no Content-Length): refused while reading, after a valid part was processed.
    resp = post(session, srv, ds, (body[i:i + 65536] for i in range(0, len(body), 65536)))
    assert resp.status_code == 413, resp.text
    assert_unchanged(srv, ds, before)


def test_authentication(srv, ds, session, corpus, stored):
    before = snapshot(srv, ds)
    body = multipart([("application/dicom", to_bytes(variant(corpus, "CT_small.dcm", ".12")))])
    ct = 'multipart/related; type="application/dicom"; boundary=stowtestboundary'
    # Unsigned.
    resp = requests.post(f"{srv.url}/datastore/{ds}/studies", data=body, headers={"Content-Type": ct})
    assert resp.status_code == 403, resp.text
    assert resp.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    # A declared SHA-256 that is not the body's: nothing stored.
    wrong = requests.Session()
    wrong.auth = SigV4(declared=hashlib.sha256(b"something else").hexdigest())
    resp = post(wrong, srv, ds, body)
    assert resp.status_code == 403, resp.text
    assert resp.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    # Signed without x-amz-content-sha256 (the body is streamed, so the hash must be declared).
    aws = AWSRequest(method="POST", url=f"{srv.url}/datastore/{ds}/studies", data=body,
                     headers={"Content-Type": ct, "Host": urllib.parse.urlsplit(srv.url).netloc})
    SigV4Auth(Credentials("test", "test"), "medical-imaging", "us-east-1").add_auth(aws)
    resp = requests.post(aws.url, data=body, headers=dict(aws.headers))
    assert resp.status_code == 400, resp.text
    assert resp.headers["x-amzn-ErrorType"] == "IncompleteSignatureException"
    # A wrong signature.
    signed = requests.Request("POST", f"{srv.url}/datastore/{ds}/studies", data=body,
                              headers={"Content-Type": ct}, auth=SigV4()).prepare()
    signed.headers["Authorization"] = signed.headers["Authorization"][:-4] + "0000"
    resp = requests.Session().send(signed)
    assert resp.status_code == 403, resp.text
    assert_unchanged(srv, ds, before)


def test_stalled_body_times_out(srv, ds, corpus, stored):
    """A body that stops arriving is ended with 408 after the idle timeout, storing nothing."""
    before = snapshot(srv, ds)
    body = multipart([("application/dicom", to_bytes(variant(corpus, "CT_small.dcm", ".13")))])
    url = f"{srv.url}/datastore/{ds}/studies"
    req = requests.Request("POST", url, data=iter([body]), auth=SigV4(), headers={
        "Content-Type": 'multipart/related; type="application/dicom"; boundary=stowtestboundary'}).prepare()
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("POST", parts.path, skip_host=True, skip_accept_encoding=True)
    for k, v in req.headers.items():
        if k.lower() not in ("transfer-encoding", "content-length"):
            conn.putheader(k, v)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    half = body[: len(body) // 2]
    conn.send(f"{len(half):x}\r\n".encode() + half + b"\r\n")
    started = time.monotonic()
    resp = conn.getresponse()
    assert resp.status == 408, resp.read()
    assert IDLE_SECS - 0.5 <= time.monotonic() - started < IDLE_SECS + 10
    conn.close()
    assert_unchanged(srv, ds, before)


def test_warnings_are_202(srv, ds, session, corpus, stored):
    """An instance stored with a warning (no file meta information: the transfer syntax is
    detected, 0xB000 coercion of data elements): 202 and WarningReason in its item."""
    import io

    from pydicom.filewriter import dcmwrite

    d = variant(corpus, "CT_small.dcm", ".14")
    d.file_meta = pydicom.dataset.FileMetaDataset()
    d.preamble = None
    buf = io.BytesIO()
    dcmwrite(buf, d, enforce_file_format=False, implicit_vr=False, little_endian=True)
    resp = post(session, srv, ds, multipart([("application/dicom", buf.getvalue())]))
    assert resp.status_code == 202, resp.text
    (item,) = seq(resp.json(), "00081199")
    assert value(item, "00081196") == 0xB000
    assert value(item, "00081155") == str(d.SOPInstanceUID)
    # The same kind of data set through dicomweb-client (which may add file meta information) is stored.
    d2 = variant(corpus, "CT_small.dcm", ".15")
    d2.file_meta = pydicom.dataset.FileMetaDataset()
    d2.preamble = None
    out = client_for(srv, ds, session).store_instances([d2])
    assert out.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == d2.SOPInstanceUID
    assert_nothing_pending(srv)


def test_interrupted_request_is_recovered(make_server, corpus):
    """A server killed (SIGKILL) in the middle of a STOW-RS request, after a first complete part
    was processed (its frames written as pending blobs): the request's job lease expires and the
    restarted server recovers it: no pending blob row, no LOCKED version, and the data store's
    blob files back to what they were before the request."""
    server = make_server(args=["--job-lease-ms", "2000"])
    ds = make_datastore(server, "stow-recover")

    def blob_files():
        return sorted(p for p in glob.glob(str(blob_root(server) / "datastores" / ds / "**" / "*"),
                                           recursive=True) if os.path.isfile(p))

    before = blob_files()
    part1 = multipart([("application/dicom", to_bytes(variant(corpus, "CT_small.dcm", ".21")))], close=False)
    # Part 1 ends where part 2's delimiter begins; part 2's bytes never come.
    body = part1 + b"--stowtestboundary\r\nContent-Type: application/dicom\r\n\r\nDICM"
    url = f"{server.url}/datastore/{ds}/studies"
    req = requests.Request("POST", url, data=iter([body]), auth=SigV4(), headers={
        "Content-Type": 'multipart/related; type="application/dicom"; boundary=stowtestboundary'}).prepare()
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("POST", parts.path, skip_host=True, skip_accept_encoding=True)
    for k, v in req.headers.items():
        if k.lower() not in ("transfer-encoding", "content-length"):
            conn.putheader(k, v)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(f"{len(body):x}\r\n".encode() + body + b"\r\n")
    deadline = time.monotonic() + 30
    while catalog_rows(server, "SELECT COUNT(*) FROM pending_blobs") == [(0,)] or blob_files() == before:
        assert time.monotonic() < deadline, "part 1's frames were never written"
        time.sleep(0.05)
    server.kill()
    conn.close()

    server.start()
    deadline = time.monotonic() + 30
    while True:
        pending = catalog_rows(server, "SELECT COUNT(*) FROM pending_blobs")
        locked = catalog_rows(server, "SELECT COUNT(*) FROM image_set_versions WHERE state = 'LOCKED'")
        jobs = catalog_rows(server, "SELECT state FROM jobs WHERE kind = 'stow.recover'")
        if pending == [(0,)] and locked == [(0,)] and jobs == [("SUCCEEDED",)] and blob_files() == before:
            break
        assert time.monotonic() < deadline, (pending, locked, jobs, len(blob_files()), len(before))
        time.sleep(0.2)
