#!/usr/bin/env python3
"""Generate SigV4 test vectors for crates/lightbox-sigv4 with botocore.

Writes crates/lightbox-sigv4/tests/fixtures/botocore-vectors.json: requests exactly as
they would appear on the wire (raw path, raw query, headers incl. Host, body), signed
by botocore at a frozen time, so the Rust tests run without Python.

Two sources:
  * a real boto3 ``medical-imaging`` client pointed at http://127.0.0.1:8080, with the
    HTTP send intercepted (``before-send``), so serialisation, label encoding and the
    ``runtime-`` host prefix are the SDK's own;
  * ``botocore.auth.SigV4Auth`` / ``SigV4QueryAuth`` on hand-built requests, for
    presigned URLs, Date headers, x-amz-content-sha256 and session tokens.

Usage: /work/main/.venv/bin/python scripts/sigv4-vectors.py
"""

import base64
import datetime
import hashlib
import json
import pathlib
from unittest import mock
from urllib.parse import urlsplit

import boto3
import botocore
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/lightbox-sigv4/tests/fixtures/botocore-vectors.json"

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SERVICE = "medical-imaging"
NOW = datetime.datetime(2026, 11, 27, 12, 34, 56)
ENDPOINT = "http://127.0.0.1:8080"
STABLE = {
    "user-agent": f"Boto3/{boto3.__version__} Botocore/{botocore.__version__} (pinned by sigv4-vectors.py)",
    "amz-sdk-invocation-id": "00000000-0000-4000-8000-000000000000",
}
DS = "0123456789abcdef0123456789abcdef"
IS = "fedcba9876543210fedcba9876543210"
ARN = f"arn:aws:medical-imaging:us-east-1:000000000000:datastore/{DS}"


class Captured(Exception):
    """Raised from before-send once the signed request has been captured."""


def wire(name, method, url, headers, body, kind, region):
    parts = urlsplit(url)
    hdrs = [[k, v if isinstance(v, str) else v.decode("latin-1")] for k, v in headers.items()]
    if not any(k.lower() == "host" for k, _ in hdrs):
        # urllib3 sends Host: <netloc> (the port is kept when it is not the default).
        hdrs.insert(0, ["Host", parts.netloc])
    # botocore never signs these and their values vary from run to run (feature-id
    # order in the user agent, a fresh invocation UUID); pin them so the fixture is
    # reproducible.
    signed = next((v for k, v in hdrs if k.lower() == "authorization"), parts.query)
    for i, (k, _) in enumerate(hdrs):
        if k.lower() in STABLE:
            assert k.lower() not in signed.lower(), f"{k} is signed in {name}"
            hdrs[i][1] = STABLE[k.lower()]
    if isinstance(body, str):
        body = body.encode()
    body = body or b""
    if body and not any(k.lower() == "content-length" for k, _ in hdrs):
        hdrs.append(["Content-Length", str(len(body))])
    return {
        "name": name,
        "kind": kind,
        "method": method,
        "raw_path": parts.path,
        "raw_query": parts.query if ("?" in url) else None,
        "headers": hdrs,
        "body_base64": base64.b64encode(body).decode(),
        "now": NOW.strftime("%Y%m%dT%H%M%SZ"),
        "access_key_id": AKID,
        "secret": SECRET,
        "region": region,
        "service": SERVICE,
    }


def client_vectors():
    vectors = []
    for region in ["us-east-1", "eu-west-2"]:
        client = boto3.client(
            "medical-imaging",
            region_name=region,
            endpoint_url=ENDPOINT,
            aws_access_key_id=AKID,
            aws_secret_access_key=SECRET,
        )
        captured = {}

        def before_send(request, **_):
            captured["request"] = request
            raise Captured()  # short-circuits the HTTP send

        client.meta.events.register("before-send", before_send)
        calls = [
            ("list-datastores", "list_datastores", {"maxResults": 10, "datastoreStatus": "ACTIVE"}),
            ("list-datastores-next-token", "list_datastores", {"nextToken": "a b+c/=&d~é"}),
            ("get-datastore", "get_datastore", {"datastoreId": DS}),
            ("create-datastore", "create_datastore", {"datastoreName": "my store", "clientToken": "tok-1"}),
            ("tag-resource", "tag_resource", {"resourceArn": ARN, "tags": {"k": "v w"}}),
            ("untag-resource", "untag_resource", {"resourceArn": ARN, "tagKeys": ["b", "a", "a b"]}),
            ("list-tags", "list_tags_for_resource", {"resourceArn": ARN + f"/imageset/{IS}"}),
            ("get-image-set", "get_image_set", {"datastoreId": DS, "imageSetId": IS}),
            ("get-image-set-version", "get_image_set", {"datastoreId": DS, "imageSetId": IS, "versionId": "2"}),
            ("get-image-frame", "get_image_frame", {"datastoreId": DS, "imageSetId": IS, "imageFrameInformation": {"imageFrameId": DS}}),
            (
                "search-image-sets",
                "search_image_sets",
                {
                    "datastoreId": DS,
                    "maxResults": 5,
                    "searchCriteria": {"filters": [{"values": [{"DICOMPatientId": "P 1/ü"}], "operator": "EQUAL"}]},
                },
            ),
            ("delete-image-set", "delete_image_set", {"datastoreId": DS, "imageSetId": IS}),
        ]
        for name, op, params in calls:
            with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: NOW):
                try:
                    getattr(client, op)(**params)
                except Captured:
                    pass
            r = captured.pop("request")
            vectors.append(wire(f"client/{region}/{name}", r.method, r.url, r.headers, r.body, "header", region))
    return vectors


def signer_vectors():
    creds = Credentials(AKID, SECRET)
    token_creds = Credentials(AKID, SECRET, token="FQoGZXIvYXdzEXAMPLE//token+with/slashes==")
    vectors = []

    def sign(name, method, url, headers=None, body=b"", kind="header", credentials=creds, region="us-east-1", expires=None):
        req = AWSRequest(method=method, url=url, headers=headers or {}, data=body)
        if kind == "header":
            signer = botocore.auth.SigV4Auth(credentials, SERVICE, region)
        else:
            signer = botocore.auth.SigV4QueryAuth(credentials, SERVICE, region, expires=expires or 3600)
        with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: NOW):
            signer.add_auth(req)
        p = req.prepare()
        v = wire(name, p.method, p.url, p.headers, p.body, kind, region)
        if expires:
            v["expires"] = expires
        return v

    rt = "http://runtime-127.0.0.1:8080"
    tags = "/tags/" + ARN.replace(":", "%3A").replace("/", "%2F")
    vectors.append(sign("signer/untag-repeated-keys", "DELETE", f"{ENDPOINT}{tags}?tagKeys=a&tagKeys=b"))
    vectors.append(sign("signer/empty-body-runtime", "POST", f"{rt}/datastore/{DS}/imageSet/{IS}/getImageSet"))
    vectors.append(
        sign(
            "signer/json-body",
            "POST",
            f"{rt}/datastore/{DS}/imageSet/{IS}/getImageFrame",
            {"Content-Type": "application/json"},
            json.dumps({"imageFrameId": DS}).encode(),
        )
    )
    vectors.append(sign("signer/date-header", "GET", f"{ENDPOINT}/datastore/{DS}", {"Date": "placeholder"}))
    vectors.append(
        sign("signer/unsigned-payload", "POST", f"{ENDPOINT}/datastore", {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}, b'{"x":1}')
    )
    vectors.append(
        sign(
            "signer/content-sha256",
            "POST",
            f"{ENDPOINT}/datastore",
            {"X-Amz-Content-SHA256": hashlib.sha256(b"not-json").hexdigest()},
            b"not-json",
        )
    )
    vectors.append(sign("signer/session-token", "GET", f"{ENDPOINT}/datastore", credentials=token_creds))
    vectors.append(sign("signer/header-spaces", "GET", f"{ENDPOINT}/datastore", {"X-Custom": "  a   b  "}))
    vectors.append(sign("signer/any-region", "GET", f"{ENDPOINT}/datastore", region="local-region-9"))
    vectors.append(sign("presigned/list-datastores", "GET", f"{ENDPOINT}/datastore?maxResults=3", kind="query", expires=300))
    vectors.append(
        sign("presigned/get-image-set", "POST", f"{rt}/datastore/{DS}/imageSet/{IS}/getImageSet", kind="query")
    )
    vectors.append(sign("presigned/tags", "GET", f"{ENDPOINT}{tags}", kind="query", credentials=token_creds, expires=604800))
    return vectors


def main():
    vectors = client_vectors() + signer_vectors()
    doc = {
        "generator": "scripts/sigv4-vectors.py",
        "botocore": botocore.__version__,
        "vectors": vectors,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(vectors)} vectors to {OUT}")


if __name__ == "__main__":
    main()
