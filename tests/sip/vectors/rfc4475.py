"""Messages of RFC 4475 (SIP torture test messages), byte for byte as the RFC writes
them (its line ends are CRLF; ``\\\\`` below is one backslash of the RFC's text).

The four a proxy used to handle otherwise than the RFC intends, and the variants the
tests need beside them. Each name is the RFC's own (its section in the comment).
"""

from __future__ import annotations


def _crlf(*lines: str) -> bytes:
    return ("\r\n".join(lines)).encode("latin-1")


SDP_150 = _crlf(
    "v=0",
    "o=mhandley 29739 7272939 IN IP4 192.0.2.3",
    "s=-",
    "c=IN IP4 192.0.2.4",
    "t=0 0",
    "m=audio 49217 RTP/AVP 0 12",
    "m=video 3227 RTP/AVP 31",
    "a=rtpmap:31 LPC",
    "",
)

# §3.1.1.1: a short tortuous INVITE -- valid, written with every legal oddity:
# folding, LWS around colons, semicolons and equals signs, compact and long forms of
# one header, unknown headers and parameters, Max-Forwards 0068, a CSeq on two lines.
WSINV = (
    _crlf(
        "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0",
        "TO :",
        " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
        'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>',
        "  ;",
        "  tag = 98asjd8",
        "MaX-fOrWaRdS: 0068",
        "Call-ID: wsinv.ndaksdj@192.0.2.1",
        "Content-Length   : 150",
        "cseq: 0009",
        "  INVITE",
        "Via  : SIP  /   2.0",
        " /UDP",
        "    192.0.2.2;branch=390skdjuw",
        "s :",
        "NewFangledHeader:   newfangled value",
        " continued newfangled value",
        "UnknownHeaderWithUnusualValue: ;;,,;;,;",
        "Content-Type: application/sdp",
        "Route:",
        " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>",
        "v:  SIP  / 2.0  / TCP     spindle.example.com   ;",
        "  branch  =   z9hG4bK9ikj8  ,",
        " SIP  /    2.0   / UDP  192.168.255.111   ; branch=",
        " z9hG4bK30239",
        'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =',
        "      newvalue ;",
        "  secondparam ; q = 0.33",
        "",
        "",
    )
    + SDP_150
)

# The same request written plainly: one line a header, long names, no extra blanks.
WSINV_PLAIN = (
    _crlf(
        "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0",
        "To: sip:vivekg@chair-dnrc.example.com;tag=1918181833n",
        'From: "J Rosenberg \\\\\\"" <sip:jdrosen@example.com>;tag=98asjd8',
        "Max-Forwards: 68",
        "Call-ID: wsinv.ndaksdj@192.0.2.1",
        "Content-Length: 150",
        "CSeq: 9 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.2;branch=390skdjuw",
        "Subject: ",
        "NewFangledHeader: newfangled value continued newfangled value",
        "UnknownHeaderWithUnusualValue: ;;,,;;,;",
        "Content-Type: application/sdp",
        "Route: <sip:services.example.com;lr;unknownwith=value;unknown-no-value>",
        "Via: SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8",
        "Via: SIP/2.0/UDP 192.168.255.111;branch=z9hG4bK30239",
        'Contact: "Quoted string \\"\\"" <sip:jdrosen@example.com>;newparam=newvalue;'
        "secondparam;q=0.33",
        "",
        "",
    )
    + SDP_150
)

# §3.3.5: Proxy-Require and Require naming extensions nobody supports. A proxy answers
# 420 Bad Extension with Unsupported listing the Proxy-Require ones.
BEXT01 = _crlf(
    "OPTIONS sip:user@example.com SIP/2.0",
    "To: sip:j_user@example.com",
    "From: sip:caller@example.net;tag=242etr",
    "Max-Forwards: 6",
    "Call-ID: bext01@239409asdfakjkn23onasd0-3234",
    "CSeq: 234234 OPTIONS",
    "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw",
    "Require: nothingSupportsThis, nothingSupportsThisEither",
    "Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis",
    "Content-Length: 0",
    "",
    "",
)

SDP_ESCRURI = SDP_150.replace(b"192.0.2.3", b"192.0.2.1").replace(b"192.0.2.4", b"192.0.2.1")

# §3.1.2.11: a Request-URI with an escaped header (RFC 3261 §19.1.1 allows none
# there): 400 Bad Request.
ESCRURI = (
    _crlf(
        "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=341518",
        "Max-Forwards: 7",
        "Contact: <sip:caller@host39923.example.net>",
        "Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5",
        "CSeq: 149209342 INVITE",
        "Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw",
        "Content-Type: application/sdp",
        f"Content-Length: {len(SDP_ESCRURI)}",
        "",
        "",
    )
    + SDP_ESCRURI
)

SDP_BCAST = SDP_150.replace(b"192.0.2.3", b"192.0.2.198").replace(b"192.0.2.4", b"192.0.2.198")

# §3.3.10: a 200 OK whose second Via names 255.255.255.255: forwarding it would
# broadcast it. Dropped.
BCAST = (
    _crlf(
        "SIP/2.0 200 OK",
        "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923",
        "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23",
        "Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf",
        "CSeq: 35 INVITE",
        "From: sip:user@example.com;tag=11141343",
        "To: sip:user@example.edu;tag=2229",
        "Content-Length: 154",
        "Content-Type: application/sdp",
        "Contact: <sip:user@host28.example.com>",
        "",
        "",
    )
    + SDP_BCAST
)

# The request the bcast 200 would answer, as a proxy receives it: a usable top Via,
# the broadcast one below. Its responses would be sent on to 255.255.255.255 by the
# element above: answered 400, never relayed.
BCAST_REQUEST = (
    _crlf(
        "INVITE sip:user@example.edu SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923",
        "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23",
        "Max-Forwards: 70",
        "Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf",
        "CSeq: 35 INVITE",
        "From: sip:user@example.com;tag=11141343",
        "To: sip:user@example.edu",
        "Contact: <sip:user@host28.example.com>",
        "Content-Type: application/sdp",
        "Content-Length: 154",
        "",
        "",
    )
    + SDP_BCAST
)
