"""OHIF Viewer v3's DICOMweb request sequence replayed against the real binary (issue #8), with raw
SigV4-signed `requests` (botocore, service medical-imaging, us-east-1, test/test), asserting of
every response what OHIF's code reads from it. Runs on both backends
(LIGHTBOX_TEST_BACKEND=embedded | postgres-s3).

The requests are those OHIF's default DicomWebDataSource sends with the HealthImaging
configuration of healthimaging-notes.md §11.3 (qidoSupportsIncludeField false,
supportsFuzzyMatching false, supportsWildcard false, enableStudyLazyLoad true,
singlepart "bulkdata,video", imageRendering / thumbnailRendering "wadors"), as read in the public
sources of OHIF/Viewers and dcmjs-org/dicomweb-client:

1. Study list (WorkList): `query.studies.search` -> qido.js `mapParams` -> dicomweb-client
   `searchForStudies`, whose `_parseQueryParameters` writes `key=encodeURIComponent(value)` in the
   object's key order, undefined / empty values dropped:
   `GET /studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060`
   (OHIF 3.x releases; current master adds 00080090 and 00100030 to includefield), with
   `Accept: application/dicom+json`. Filters come first (PatientName, 00100020, AccessionNumber,
   StudyDescription, ModalitiesInStudy), StudyDate and StudyInstanceUID (UIDs joined by `\\`)
   after includefield. qido.js `processResults` reads 0020000D, 00080020, 00080030, 00080050,
   00100020, 00100010 (PN object, `getName`), 00100030, 00201208 (Number()), 00081030,
   00080060 / 00080061 (`getModalities`), 00080090.
2. Expanding a study row: `query.series.search` -> qido.js `seriesInStudy`:
   `GET /studies/{s}/series?includefield=0008103E%2C00080021`; `processSeriesResults` reads
   0020000E, 00080060, 00200011, 00080021, 00201209, 0008103E.
3. Opening the viewer (`?StudyInstanceUIDs=`): the study browser panel searches the study
   (`...&includefield=...&StudyInstanceUID={s}`) and the patient's other studies
   (getStudiesForPatientByMRN: `00100020={mrn}&limit=101&...`); lazy study load
   (`_retrieveSeriesMetadataAsync` -> retrieveMetadataLoaderAsync) searches the series with no
   query string at all (`GET /studies/{s}/series`, or `?SeriesInstanceUID={se}` first when the
   URL names series), naturalizes them with dcmjs and sorts them, then
   `GET /studies/{s}/series/{se}/metadata` per series (`Accept: application/dicom+json`); every
   instance is naturalized and its StudyInstanceUID / SeriesInstanceUID / SOPInstanceUID /
   NumberOfFrames build the wadors image ids.
4. Frames (cornerstone dicom-image-loader, wadors): one `GET .../instances/{i}/frames/{n}` per
   frame, `Accept` from OHIF's `generateAcceptHeader`: the data source's `acceptHeader` list as
   configured (the HealthImaging deployment's four entries, notes §11.2; XMLHttpRequest turns
   the array into a string, i.e. joined by "," without a space), or, with no list configured,
   `multipart/related; type="application/octet-stream"; transfer-syntax="*"`. The loader takes the
   boundary from the first body line starting with `--`, the part's media type from the line
   starting with exactly `Content-Type:`, the bytes up to the next boundary, and the transfer
   syntax from that Content-Type's `transfer-syntax=` parameter (Implicit VR LE if absent).

Our own code throughout (no OHIF code copied)."""

import shutil
import urllib.parse

import numpy as np
import pydicom
import pytest
import requests

from conftest import module_server, SigV4
from test_image_set_reads import boto3_import, decode_htj2k, reference_pixels
from test_import import make_datastore

HTJ2K = "1.2.840.10008.1.2.4.202"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
ELE = "1.2.840.10008.1.2.1"
ILE = "1.2.840.10008.1.2"
DICOM_JSON = "application/dicom+json"

# The HealthImaging OHIF deployment's acceptHeader entries (notes §11.2), in order.
AHI_ACCEPT_ENTRIES = [
    f"multipart/related; type=image/jphc; transfer-syntax={HTJ2K}",
    f"multipart/related; type=image/jp2; transfer-syntax={J2K_LOSSLESS}",
    f"multipart/related; type=image/jpeg; transfer-syntax={JPEG_BASELINE}",
    f"multipart/related; type=application/octet-stream; transfer-syntax={ELE}",
]
FRAME_ACCEPTS = {
    # As the notes quote it: one header, ", " between entries.
    "ahi-list": ", ".join(AHI_ACCEPT_ENTRIES),
    # What the browser sends for the configured array: String(array) joins with "," alone.
    "ahi-array": ",".join(AHI_ACCEPT_ENTRIES),
    # OHIF's default with no acceptHeader configured (both parameters quoted).
    "ohif-default": 'multipart/related; type="application/octet-stream"; transfer-syntax="*"',
}

# OHIF 3.x study-list includefield; current master's longer one.
INCLUDE_RELEASE = "00081030,00080060"
INCLUDE_MASTER = "00081030,00080060,00080090,00100030"
SERIES_INCLUDE = "0008103E,00080021"

# Corpus files, one import job: a CT; an MR series of two instances (the second one made here);
# a 10-frame MR; an RGB secondary capture series whose second instance stays JPEG baseline.
CORPUS = ["CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "SC_rgb.dcm", "SC_rgb_jpeg_dcmtk.dcm"]


def enc(value):
    """encodeURIComponent (what dicomweb-client applies to every query value)."""
    return urllib.parse.quote(str(value), safe="-_.!~*'()")


def query(params):
    """dicomweb-client's `_parseQueryParameters`: insertion order, `key=encodeURIComponent(v)`."""
    return "?" + "&".join(f"{k}={enc(v)}" for k, v in params.items())


def study_list_params(includefield=INCLUDE_RELEASE, **filters):
    """qido.js mapParams with supportsFuzzyMatching / supportsWildcard false, in its key order."""
    head = {k: filters.pop(k) for k in ("PatientName", "00100020", "AccessionNumber", "StudyDescription",
                                       "ModalitiesInStudy") if k in filters}
    params = {**head, "limit": 101, "offset": 0, "fuzzymatching": "false", "includefield": includefield}
    for k in ("StudyDate", "StudyInstanceUID"):
        if k in filters:
            params[k] = filters.pop(k)
    assert not filters, filters
    return params


@pytest.fixture(scope="module")
def srv(tmp_path_factory, module_aws_env):
    server = module_server(tmp_path_factory, "ohif-server")
    yield server
    server.kill()


@pytest.fixture(scope="module")
def store(srv, corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("ohif-store")
    ds = make_datastore(srv, "ohif")
    files = {}
    for name in CORPUS:
        shutil.copy(corpus / name, root / name)
        files[name] = root / name
    # The MR series gets a SeriesDescription (no corpus file here has one).
    mr1 = pydicom.dcmread(corpus / "MR_small.dcm")
    mr1.SeriesDescription = "OHIF replay MR"
    mr1.save_as(root / "MR_small.dcm")
    mr2 = pydicom.dcmread(corpus / "MR_small.dcm")
    mr2.SeriesDescription = "OHIF replay MR"
    mr2.SOPInstanceUID = mr2.SOPInstanceUID + ".2"
    mr2.file_meta.MediaStorageSOPInstanceUID = mr2.SOPInstanceUID
    mr2.InstanceNumber = 2
    ipp = [float(v) for v in mr2.ImagePositionPatient]
    mr2.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + 5.0]
    mr2.PixelData = (mr2.pixel_array[::-1].astype(mr2.pixel_array.dtype)).tobytes()  # other pixels
    mr2.save_as(root / "MR_small_2.dcm")
    files["MR_small_2.dcm"] = root / "MR_small_2.dcm"
    placed, _ = boto3_import(srv, ds, "ohif", files, "job1")
    assert all(r.get("isPrimary", True) for r in placed.values()), placed
    # Source data sets by SOP Instance UID, and studies -> series -> [file names].
    sources = {}
    studies = {}
    for name, path in files.items():
        d = pydicom.dcmread(path, stop_before_pixels=True)
        sources[str(d.SOPInstanceUID)] = (name, path, d)
        studies.setdefault(str(d.StudyInstanceUID), {}).setdefault(str(d.SeriesInstanceUID), []).append(name)
    return {"ds": ds, "files": files, "sources": sources, "studies": studies,
            "base": f"{srv.url}/datastore/{ds}"}


@pytest.fixture(scope="module")
def session():
    s = requests.Session()
    s.auth = SigV4()
    return s


def get_json(session, url):
    """OHIF's `_httpGetApplicationJson`: Accept application/dicom+json, a JSON array back (the XHR
    has responseType json; a non-array breaks processResults / naturalizeDataset)."""
    resp = session.get(url, headers={"Accept": DICOM_JSON})
    assert resp.status_code == 200, (url, resp.status_code, resp.text[:500])
    assert resp.headers["Content-Type"].split(";")[0].strip() == DICOM_JSON, resp.headers
    body = resp.json()
    assert isinstance(body, list), body
    return body


# --- what OHIF's readers need of DICOM JSON -----------------------------------------------------


def check_element(obj, tag, vr, where):
    assert tag in obj, f"{where}: {tag} missing"
    el = obj[tag]
    assert el.get("vr") == vr, f"{where}: {tag} vr {el.get('vr')!r}, want {vr}"
    return el.get("Value")


def string_value(obj, tag):
    """OHIF DICOMWeb.getString: Value joined with a backslash ('' when absent)."""
    v = obj.get(tag, {}).get("Value")
    return "\\".join(str(x) for x in v) if v else ""


def name_value(obj, tag):
    """OHIF DICOMWeb.getName: the first value's Alphabetic (PN object)."""
    v = obj.get(tag, {}).get("Value")
    if not v:
        return ""
    assert isinstance(v[0], dict) and set(v[0]) <= {"Alphabetic", "Ideographic", "Phonetic"}, v
    return v[0].get("Alphabetic", "")


def src_str(d, keyword):
    v = d.get(keyword)
    if v is None or v == "":
        return ""
    if isinstance(v, pydicom.multival.MultiValue):
        return "\\".join(str(x) for x in v)
    return str(v)


def number_list(values):
    return [float(x) for x in values]


# --- 1. study list --------------------------------------------------------------------------------


STUDY_VRS = {
    "0020000D": "UI", "00080020": "DA", "00080030": "TM", "00080050": "SH", "00100020": "LO",
    "00100010": "PN", "00081030": "LO", "00080061": "CS", "00201206": "IS", "00201208": "IS",
}


def check_study(study, store, where):
    uid = string_value(study, "0020000D")
    assert uid in store["studies"], (where, uid)
    for tag, vr in STUDY_VRS.items():
        check_element(study, tag, vr, f"{where} {uid}")
    series = store["studies"][uid]
    names = [n for ns in series.values() for n in ns]
    d = pydicom.dcmread(store["files"][names[0]], stop_before_pixels=True)
    assert string_value(study, "00080020") == src_str(d, "StudyDate"), where
    assert string_value(study, "00080030") == src_str(d, "StudyTime"), where
    assert string_value(study, "00080050") == src_str(d, "AccessionNumber"), where
    assert string_value(study, "00100020") == src_str(d, "PatientID"), where
    assert name_value(study, "00100010") == src_str(d, "PatientName"), where
    assert string_value(study, "00081030") == src_str(d, "StudyDescription"), where
    modalities = {str(pydicom.dcmread(store["files"][n], stop_before_pixels=True).Modality) for n in names}
    assert set(study["00080061"].get("Value", [])) == modalities, (where, study["00080061"])
    # Counts are JSON numbers (OHIF: Number(getString(...))).
    assert study["00201206"]["Value"] == [len(series)], (where, study["00201206"])
    assert study["00201208"]["Value"] == [len(names)], (where, study["00201208"])
    if "00100030" in study:
        check_element(study, "00100030", "DA", where)
        assert string_value(study, "00100030") == src_str(d, "PatientBirthDate"), where
    return uid


def test_study_list(session, store):
    for include in (INCLUDE_RELEASE, INCLUDE_MASTER):
        url = store["base"] + "/studies" + query(study_list_params(include))
        if include == INCLUDE_RELEASE:
            assert url.endswith("/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060")
        studies = get_json(session, url)
        got = [check_study(s, store, include) for s in studies]
        assert sorted(got) == sorted(store["studies"]), include
    # Master also asks for 00100030 (patientBirthDate); a required study attribute anyway.
    studies = get_json(session, store["base"] + "/studies" + query(study_list_params(INCLUDE_MASTER)))
    for s in studies:
        check_element(s, "00100030", "DA", "master includefield")


def test_study_list_referring_physician(session, store):
    """PS3.18 Table 6.7.1-2's ReferringPhysicianName, which OHIF master's includefield and
    processResults (referringPhysicianName) ask for: in every study object, PN."""
    studies = get_json(session, store["base"] + "/studies" + query(study_list_params(INCLUDE_MASTER)))
    for s in studies:
        uid = string_value(s, "0020000D")
        names = [n for ns in store["studies"][uid].values() for n in ns]
        d = pydicom.dcmread(store["files"][names[0]], stop_before_pixels=True)
        check_element(s, "00080090", "PN", uid)
        assert name_value(s, "00080090") == src_str(d, "ReferringPhysicianName"), uid


def test_study_list_filters(session, store):
    ct = pydicom.dcmread(store["files"]["CT_small.dcm"], stop_before_pixels=True)
    mr = pydicom.dcmread(store["files"]["MR_small.dcm"], stop_before_pixels=True)
    cases = [
        # WorkList filters with supportsWildcard false: values sent as typed.
        (dict(PatientName=str(ct.PatientName)), [ct.StudyInstanceUID]),
        (dict(ModalitiesInStudy="CT"), [ct.StudyInstanceUID]),
        (dict(StudyDate="20040101-20041231"), sorted([ct.StudyInstanceUID, mr.StudyInstanceUID])),
        # Study browser panel: the opened study, then the patient's studies by MRN.
        (dict(StudyInstanceUID=str(mr.StudyInstanceUID)), [mr.StudyInstanceUID]),
        (dict(StudyInstanceUID=f"{ct.StudyInstanceUID}\\{mr.StudyInstanceUID}"),
         sorted([ct.StudyInstanceUID, mr.StudyInstanceUID])),
        ({"00100020": str(mr.PatientID)}, [mr.StudyInstanceUID]),
    ]
    for filters, want in cases:
        url = store["base"] + "/studies" + query(study_list_params(**dict(filters)))
        studies = get_json(session, url)
        assert sorted(string_value(s, "0020000D") for s in studies) == sorted(map(str, want)), url
        for s in studies:
            check_study(s, store, url)


# --- 2/3. series lists --------------------------------------------------------------------------


def check_series_list(results, store, study_uid, where):
    want = store["studies"][study_uid]
    got = {}
    for s in results:
        se = check_element(s, "0020000E", "UI", where)[0]
        assert se in want, (where, se)
        d = pydicom.dcmread(store["files"][want[se][0]], stop_before_pixels=True)
        assert check_element(s, "00080060", "CS", where) == [str(d.Modality)], where
        number = check_element(s, "00200011", "IS", where)
        assert number == [int(d.SeriesNumber)], (where, number)
        if "00201209" in s:
            assert s["00201209"] == {"vr": "IS", "Value": [len(want[se])]}, (where, s["00201209"])
        got[se] = s
    assert sorted(got) == sorted(want), where
    return got


def test_series_list_of_expanded_study_row(session, store):
    for study_uid in store["studies"]:
        url = f"{store['base']}/studies/{study_uid}/series" + query({"includefield": SERIES_INCLUDE})
        assert url.endswith("/series?includefield=0008103E%2C00080021")
        check_series_list(get_json(session, url), store, study_uid, url)


def test_series_list_description_and_date(session, store):
    """OHIF's seriesInStudy asks for exactly SeriesDescription and SeriesDate by includefield and
    processSeriesResults shows them (description, seriesDate) in the study row."""
    for study_uid in store["studies"]:
        url = f"{store['base']}/studies/{study_uid}/series" + query({"includefield": SERIES_INCLUDE})
        got = check_series_list(get_json(session, url), store, study_uid, url)
        for se, s in got.items():
            d = pydicom.dcmread(store["files"][store["studies"][study_uid][se][0]], stop_before_pixels=True)
            # SeriesDescription is in every series object (empty when the series has none).
            assert s.get("0008103E", {}).get("vr") == "LO", (url, s.get("0008103E"))
            for tag, keyword, vr in (("0008103E", "SeriesDescription", "LO"), ("00080021", "SeriesDate", "DA")):
                if src_str(d, keyword):
                    assert s.get(tag, {}).get("vr") == vr, (url, tag, s.get(tag))
                    assert string_value(s, tag) == src_str(d, keyword), (url, tag, s.get(tag))


def test_series_search_of_lazy_study_load(session, store):
    for study_uid, series in store["studies"].items():
        url = f"{store['base']}/studies/{study_uid}/series"
        check_series_list(get_json(session, url), store, study_uid, url)
        # With series named in the viewer URL, the first preloader filters on them.
        for se in series:
            one = get_json(session, url + query({"SeriesInstanceUID": se}))
            assert [string_value(s, "0020000E") for s in one] == [se], se


# --- 3. series metadata ---------------------------------------------------------------------------


def check_instance(item, source, where):
    name, path, d = source
    # What naturalizeDataset + OHIF's storeInstances / image ids / SOP class handlers read.
    for tag, kw, vr in (("0020000D", "StudyInstanceUID", "UI"), ("0020000E", "SeriesInstanceUID", "UI"),
                        ("00080018", "SOPInstanceUID", "UI"), ("00080016", "SOPClassUID", "UI"),
                        ("00080060", "Modality", "CS")):
        assert check_element(item, tag, vr, where) == [str(d.get(kw))], (where, tag)
    assert check_element(item, "00200013", "IS", where) == [int(d.InstanceNumber)], where
    for tag, kw in (("00280010", "Rows"), ("00280011", "Columns"), ("00280100", "BitsAllocated"),
                    ("00280101", "BitsStored"), ("00280102", "HighBit"), ("00280103", "PixelRepresentation"),
                    ("00280002", "SamplesPerPixel")):
        assert check_element(item, tag, "US", where) == [int(d.get(kw))], (where, tag)
    assert check_element(item, "00280004", "CS", where) == [str(d.PhotometricInterpretation)], where
    if "PlanarConfiguration" in d:
        assert check_element(item, "00280006", "US", where) == [int(d.PlanarConfiguration)], where
    if "NumberOfFrames" in d:
        assert check_element(item, "00280008", "IS", where) == [int(d.NumberOfFrames)], where
    if "PixelSpacing" in d:
        got = check_element(item, "00280030", "DS", where)
        assert number_list(got) == pytest.approx(number_list(d.PixelSpacing)), where
    if str(d.Modality) in ("CT", "MR") and "ImagePositionPatient" in d:
        for tag, kw in (("00200032", "ImagePositionPatient"), ("00200037", "ImageOrientationPatient")):
            got = check_element(item, tag, "DS", where)
            assert number_list(got) == pytest.approx(number_list(d.get(kw))), (where, tag)
    for tag, kw in (("00281050", "WindowCenter"), ("00281051", "WindowWidth"), ("00281052", "RescaleIntercept"),
                    ("00281053", "RescaleSlope")):
        if kw in d:
            got = check_element(item, tag, "DS", where)
            want = d.get(kw)
            want = list(want) if isinstance(want, pydicom.multival.MultiValue) else [want]
            assert number_list(got) == pytest.approx(number_list(want)), (where, tag)
    ts = check_element(item, "00020010", "UI", where)
    assert ts and len(ts) == 1, where
    # Pixel Data never inline (a BulkDataURI at most).
    px = item.get("7FE00010")
    assert px is None or ("InlineBinary" not in px and "Value" not in px), where
    return ts[0]


def series_metadata(session, store):
    """{sop: (item, transfer syntax)} for every series, fetched as the lazy loader does."""
    out = {}
    for study_uid, series in store["studies"].items():
        for se, names in series.items():
            url = f"{store['base']}/studies/{study_uid}/series/{se}/metadata"
            items = get_json(session, url)
            sops = [string_value(i, "00080018") for i in items]
            want = [sop for sop, src in store["sources"].items() if src[0] in names]
            assert sorted(sops) == sorted(want), url
            for item in items:
                sop = string_value(item, "00080018")
                ts = check_instance(item, store["sources"][sop], url)
                out[sop] = (item, ts)
    return out


@pytest.fixture(scope="module")
def metadata(session, store):
    return series_metadata(session, store)


def test_series_metadata(metadata, store):
    assert len(metadata) == len(store["sources"])
    by_name = {src[0]: metadata[sop][1] for sop, src in store["sources"].items()}
    # As stored: HTJ2K, except the JPEG baseline kept as it came.
    assert by_name == {"CT_small.dcm": HTJ2K, "MR_small.dcm": HTJ2K, "MR_small_2.dcm": HTJ2K,
                       "emri_small.dcm": HTJ2K, "SC_rgb.dcm": HTJ2K, "SC_rgb_jpeg_dcmtk.dcm": JPEG_BASELINE}


# --- 4. frames ------------------------------------------------------------------------------------


def index_of(data, needle, start=0):
    return data.find(needle, start)


def loader_extract(resp):
    """The frame as cornerstone's wadors loader takes it from the response: (part content type,
    transfer syntax it derives, bytes)."""
    outer = resp.headers["Content-Type"]
    assert "multipart" in outer, outer
    body = resp.content
    token = index_of(body, b"\r\n\r\n")
    assert token != -1, "no multipart header"
    lines = body[:token].decode("latin-1").split("\r\n")
    boundary = next((l for l in lines if l.startswith("--")), None)
    assert boundary, lines
    content_type = next((l[len("Content-Type:"):].strip() for l in lines if l.startswith("Content-Type:")), None)
    offset = token + 4
    end = index_of(body, boundary.encode("latin-1"), offset)
    assert end != -1, "terminating boundary not found"
    data = body[offset:end - 2]
    params = {}
    for p in (content_type or "").split(";"):
        kv = p.split("=")
        if len(kv) == 2:
            params[kv[0].strip()] = kv[1].strip().replace('"', "")
    return content_type, params.get("transfer-syntax", ILE), data


def strict_parts(resp):
    """Every part of the multipart/related body (RFC 2046), with its headers."""
    ct = resp.headers["Content-Type"]
    media, *params = [p.strip() for p in ct.split(";")]
    assert media == "multipart/related", ct
    params = dict(p.split("=", 1) for p in params)
    boundary = params["boundary"].strip('"').encode()
    chunks = resp.content.split(b"--" + boundary)
    assert chunks[-1].startswith(b"--"), "close delimiter"
    parts = []
    for chunk in chunks[1:-1]:
        assert chunk.startswith(b"\r\n")
        head, _, content = chunk[2:].partition(b"\r\n\r\n")
        assert content.endswith(b"\r\n")
        parts.append((dict(l.split(": ", 1) for l in head.decode().split("\r\n")), content[:-2]))
    return params, parts


def check_decoded(ts, data, path, frame_index, where):
    src, ref = reference_pixels(path)
    want = ref[frame_index]
    if ts == HTJ2K:
        got = decode_htj2k(data)
        assert np.array_equal(got.reshape(want.shape), want), where
    elif ts == JPEG_BASELINE:
        raw = pydicom.dcmread(path)
        stored = list(pydicom.encaps.generate_frames(raw.PixelData, number_of_frames=int(raw.get("NumberOfFrames", 1))))
        assert data == stored[frame_index], where
        import imagecodecs
        assert imagecodecs.jpeg8_decode(data).shape[:2] == (int(src.Rows), int(src.Columns)), where
    elif ts in (ELE, ILE):
        dtype = {8: "u1", 16: "<u2"}[int(src.BitsAllocated)]
        if int(src.PixelRepresentation) == 1:
            dtype = dtype.replace("u", "i")
        assert data == np.ascontiguousarray(want).astype(dtype).tobytes(), where
    else:
        raise AssertionError(f"{where}: unexpected transfer syntax {ts}")


def frames_url(store, d, n):
    return (f"{store['base']}/studies/{d.StudyInstanceUID}/series/{d.SeriesInstanceUID}"
            f"/instances/{d.SOPInstanceUID}/frames/{n}")


@pytest.mark.parametrize("accept", list(FRAME_ACCEPTS))
def test_frames_as_the_image_loader_fetches_them(session, store, metadata, accept):
    for sop, (name, path, d) in store["sources"].items():
        item, meta_ts = metadata[sop]
        count = int(string_value(item, "00280008") or 1)
        for n in range(1, count + 1):
            where = f"{accept} {name} frame {n}"
            resp = session.get(frames_url(store, d, n), headers={"Accept": FRAME_ACCEPTS[accept]})
            assert resp.status_code == 200, (where, resp.status_code, resp.text[:300])
            params, parts = strict_parts(resp)
            assert len(parts) == 1, where
            part_ct, ts, data = loader_extract(resp)
            assert part_ct is not None, f"{where}: no 'Content-Type:' part header"
            assert data == parts[0][1], where
            # The loader's transfer syntax is the stored one the metadata announced (OHIF's
            # metadata provider and the part agree), and one its decoders handle.
            assert ts == meta_ts, (where, part_ct, meta_ts)
            assert params.get("transfer-syntax", "").strip('"') == ts, (where, resp.headers["Content-Type"])
            media = part_ct.split(";")[0].strip()
            assert media == {HTJ2K: "image/jphc", JPEG_BASELINE: "image/jpeg"}[ts], (where, part_ct)
            check_decoded(ts, data, path, n - 1, where)


def test_frames_several_and_out_of_range(session, store):
    # Not what the image loader sends, but what a multi-frame prefetch may: frames 1..10 at once.
    path = store["files"]["emri_small.dcm"]
    d = pydicom.dcmread(path, stop_before_pixels=True)
    resp = session.get(frames_url(store, d, ",".join(map(str, range(1, 11)))),
                       headers={"Accept": FRAME_ACCEPTS["ahi-array"]})
    assert resp.status_code == 200, resp.text[:300]
    _, parts = strict_parts(resp)
    assert len(parts) == 10
    for i, (headers, data) in enumerate(parts):
        assert headers["Content-Type"] == f"image/jphc; transfer-syntax={HTJ2K}"
        check_decoded(HTJ2K, data, path, i, f"frame {i + 1}")
    # A frame past NumberOfFrames: an error, never a 200 with an empty part the loader would
    # hand to the decoder.
    resp = session.get(frames_url(store, d, 11), headers={"Accept": FRAME_ACCEPTS["ahi-array"]})
    assert resp.status_code in (400, 404), (resp.status_code, resp.text[:300])


# --- optional requests ----------------------------------------------------------------------------


def test_instance_search_of_thumbnail_fallback(session, store):
    """thumbnailRequestStrategy 'fetch' (not the HealthImaging config's wadors thumbnails): when a
    series thumbnail fetch fails OHIF asks QIDO for one instance of the series."""
    mr = pydicom.dcmread(store["files"]["MR_small.dcm"], stop_before_pixels=True)
    url = (f"{store['base']}/studies/{mr.StudyInstanceUID}/series/{mr.SeriesInstanceUID}/instances"
           + query({"limit": 1, "includefield": "00080018"}))
    results = get_json(session, url)
    assert len(results) == 1
    check_element(results[0], "00080018", "UI", url)
    # Ordered by InstanceNumber ascending (notes §11.1): instance 1 first.
    assert string_value(results[0], "00080018") == str(mr.SOPInstanceUID)


def test_cross_origin_browser(session, store, srv):
    """OHIF runs in a browser, usually on another origin than the DICOMweb endpoint: every XHR
    above carrying Authorization (SigV4's X-Amz-* too) is preceded by a CORS preflight, and each
    response must allow the origin or the browser hands OHIF nothing."""
    origin = "https://viewer.example"
    ct = pydicom.dcmread(store["files"]["CT_small.dcm"], stop_before_pixels=True)
    urls = {
        "study list": store["base"] + "/studies" + query(study_list_params()),
        "series": f"{store['base']}/studies/{ct.StudyInstanceUID}/series",
        "metadata": f"{store['base']}/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}/metadata",
        "frames": frames_url(store, ct, 1),
    }
    for what, url in urls.items():
        pre = requests.options(url, headers={"Origin": origin, "Access-Control-Request-Method": "GET",
                                             "Access-Control-Request-Headers":
                                                 "authorization,x-amz-content-sha256,x-amz-date"})
        assert 200 <= pre.status_code < 300, (what, pre.status_code, pre.text[:200])
        assert pre.headers.get("Access-Control-Allow-Origin") in ("*", origin), (what, pre.headers)
        allowed = {h.strip().lower() for h in pre.headers.get("Access-Control-Allow-Headers", "").split(",")}
        assert allowed >= {"authorization", "x-amz-content-sha256", "x-amz-date"} or "*" in allowed, (what, allowed)
        assert "GET" in pre.headers.get("Access-Control-Allow-Methods", ""), (what, pre.headers)
        accept = FRAME_ACCEPTS["ahi-array"] if what == "frames" else DICOM_JSON
        resp = session.get(url, headers={"Accept": accept, "Origin": origin})
        assert resp.status_code == 200, (what, resp.status_code)
        assert resp.headers.get("Access-Control-Allow-Origin") in ("*", origin), (what, resp.headers)
