"""SigV4 signing for `requests`, shared by the Python suites (through conftest) and the
benchmarks (scripts/bench-dicomweb.py): raw DICOMweb requests signed as the AWS SDKs sign them."""

import hashlib
import urllib.parse

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


class _DeclaredPayload(SigV4Auth):
    """botocore's signer with the payload hash taken from the x-amz-content-sha256 header."""

    def payload(self, request):
        return request.headers["x-amz-content-sha256"]


class SigV4(requests.auth.AuthBase):
    """`requests` auth signing like the AWS SDKs (service medical-imaging, us-east-1, keys
    test/test) over Host, Accept and Content-Type, with `x-amz-content-sha256`: the SHA-256 of a
    bytes body, UNSIGNED-PAYLOAD for a streamed (generator) body, or `declared` (tests of a wrong
    one). dicomweb-client sends Host without the port while the server builds URLs from Host: a
    Host without a port is replaced by the URL's (an explicit `name:port` Host is kept).
    `requests` form-encodes a space in query parameters as `+`, which SigV4 reads as a literal
    plus sign (`%2B`) while botocore signs the raw query: the query is sent with `%20`, as the
    AWS SDKs send it (a plus sign in a value is already `%2B`)."""

    def __init__(self, declared=None):
        self.declared = declared

    def __call__(self, r):
        host = r.headers.get("Host")
        if not host or ":" not in host:
            r.headers["Host"] = urllib.parse.urlsplit(r.url).netloc
        parts = urllib.parse.urlsplit(r.url)
        if "+" in parts.query:
            r.url = urllib.parse.urlunsplit(parts._replace(query=parts.query.replace("+", "%20")))
        if self.declared is not None:
            payload = self.declared
        elif isinstance(r.body, (bytes, bytearray)):
            payload = hashlib.sha256(r.body).hexdigest()
        elif isinstance(r.body, str):
            payload = hashlib.sha256(r.body.encode()).hexdigest()
        elif r.body is None:
            payload = hashlib.sha256(b"").hexdigest()
        else:
            payload = "UNSIGNED-PAYLOAD"
        r.headers["x-amz-content-sha256"] = payload
        signed = {k: v for k, v in r.headers.items()
                  if k.lower() in ("accept", "host", "content-type", "x-amz-content-sha256")}
        aws = AWSRequest(method=r.method, url=r.url, data=b"", headers=signed)
        _DeclaredPayload(Credentials("test", "test"), "medical-imaging", "us-east-1").add_auth(aws)
        for k, v in aws.headers.items():
            r.headers[k] = v
        return r


def signed_session():
    """A requests session whose every request is SigV4-signed (see `SigV4`)."""
    session = requests.Session()
    session.auth = SigV4()
    return session
