//! Bytes in, bytes out: validates a DNS query, resolves it and encodes an answer that fits
//! what the client allows. hickory-proto does the wire format; this module decides what to do
//! with each message.
//!
//! - Fewer than 12 bytes, or a response instead of a query: dropped (no answer, so the agent
//!   never takes part in a reflection loop).
//! - Longer than [`MAX_QUERY_LEN`]: REFUSED. Another opcode than QUERY: NOTIMP. Not exactly
//!   one question, more than [`MAX_QUERY_RECORDS`] other records, or bytes that do not decode:
//!   FORMERR. An EDNS version above 0: BADVERS. A class other than IN/ANY: REFUSED.
//! - Size: 512 bytes over UDP without EDNS, the client's EDNS buffer size (at least 512, at
//!   most 65467) with it, 65535 over TCP. A UDP answer without EDNS first keeps at most
//!   `udp_answer_limit` (at most 8) answers; then, if the message is still too large, the
//!   authority section goes and answers are removed (binary search) with the additional
//!   records that belonged to them. The TC bit is set when answers were removed only with
//!   `enable_truncate`, as in Consul, and always when not even one answer fits.
//! - The OPT record of the query is echoed with the client's buffer size.
//!
//! The checks run cheapest first: the 12-byte header is read before the rest is decoded, so
//! a flood of junk or oversized packets costs a header parse each.

use std::collections::HashSet;

use hickory_proto::op::{
    Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode, emit_message_parts,
};
use hickory_proto::rr::{DNSClass, Name, RData, Record};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder, NameEncoding};
use rand::Rng;

use super::resolve::{Context, resolve};
use super::settings::Settings;
use super::view::View;

/// Longest query accepted (a question is at most ~260 bytes; this leaves room for EDNS
/// options); longer ones are REFUSED.
pub const MAX_QUERY_LEN: usize = 4096;
/// Most answer, authority and additional records a query may carry.
/// A query carries at most an OPT record (and perhaps a TSIG) besides its question; the
/// bound keeps a packet from making the decoder build many records for nothing.
pub const MAX_QUERY_RECORDS: usize = 8;
/// Size of a UDP answer without EDNS.
pub const PLAIN_UDP_SIZE: usize = 512;
/// Largest UDP answer, whatever the client offers (Consul's `maxUDPDatagramSize`).
/// 65535 is the largest IP datagram; 68 bytes are the largest IPv4 header (60) and the UDP
/// header (8).
pub const MAX_UDP_SIZE: usize = 65_535 - 68;
/// Largest TCP answer (a DNS message length is 16 bits).
pub const MAX_TCP_SIZE: usize = 65_535;
/// Smallest encoded answer record (an A record with a compressed owner name).
/// 2 (name pointer) + 10 (type, class, TTL, length) + 4 (IPv4 address): no more than
/// `size / 16` records can fit, so a cap derived from it never cuts an answer that would.
const MIN_RECORD_SIZE: usize = 16;
/// Most answer records ever built for one response (Consul's TCP cap).
/// Bounds the work of one answer, whatever the catalog holds.
const MAX_ANSWERS: usize = 4096;

/// The transport a query came over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: size limited by EDNS.
    Udp,
    /// TCP: up to 64 KiB.
    Tcp,
}

/// A query for the recursors, with what is needed to relay or fail it.
#[derive(Clone, Debug)]
pub struct Forward {
    /// The decoded query.
    /// The original ID travels with it, so that the recursor's answer is checked against it.
    pub query: Message,
    /// Largest answer the client accepts.
    /// The forwarded answer must fit it too, or the client gets an empty truncated one.
    pub max_size: usize,
}

/// What to do with a packet.
#[derive(Debug)]
pub enum Outcome {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Ask the recursors (the original bytes are forwarded as they are).
    Forward(Forward),
    /// Say nothing.
    Drop,
}

/// Handles one DNS message received over `transport`.
pub fn handle<R: Rng + ?Sized>(
    packet: &[u8],
    transport: Transport,
    settings: &Settings,
    view: &View<'_>,
    now_unix: u64,
    rng: &mut R,
) -> Outcome {
    let Ok(header) = Header::read(&mut BinDecoder::new(packet)) else {
        return Outcome::Drop;
    };
    // Answering a response could start a loop between two servers (or be used to
    // reflect traffic at a spoofed source).
    if header.metadata.message_type != MessageType::Query {
        return Outcome::Drop;
    }
    let meta = header.metadata;
    // After the type check, so that an oversized response is still dropped, not answered.
    if packet.len() > MAX_QUERY_LEN {
        return bare_reply(&meta, ResponseCode::Refused, settings);
    }
    if meta.op_code != OpCode::Query {
        return bare_reply(&meta, ResponseCode::NotImp, settings);
    }
    let c = header.counts;
    let others = usize::from(c.answers) + usize::from(c.authorities) + usize::from(c.additionals);
    // Checked on the header counts, before decoding: a packet claiming thousands of
    // records is refused without building any.
    if c.queries != 1 || others > MAX_QUERY_RECORDS {
        return bare_reply(&meta, ResponseCode::FormErr, settings);
    }
    let Ok(request) = Message::from_vec(packet) else {
        return bare_reply(&meta, ResponseCode::FormErr, settings);
    };
    let Some(query) = request.queries.first() else {
        return bare_reply(&meta, ResponseCode::FormErr, settings);
    };
    let max_size = max_response_size(transport, request.edns.as_ref());
    if let Some(edns) = &request.edns
        // RFC 6891: an EDNS version the server does not implement gets BADVERS.
        && edns.version() > 0
    {
        return reply(&request, ResponseCode::BADVERS, settings, max_size);
    }
    if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
        return reply(&request, ResponseCode::Refused, settings, max_size);
    }
    // Plain UDP follows Consul's answer limit; with EDNS or TCP the size decides, and the
    // cap only bounds how many records are worth building.
    let answer_cap = match (transport, &request.edns) {
        (Transport::Udp, None) => settings.udp_answer_cap(),
        _ => (max_size / MIN_RECORD_SIZE).min(MAX_ANSWERS),
    };
    let ctx = Context {
        settings,
        view,
        now_unix,
        answer_cap,
        size_budget: max_size,
    };
    let res = resolve(query.name(), query.query_type(), &ctx, rng);
    if res.forward {
        return Outcome::Forward(Forward {
            query: request,
            max_size,
        });
    }
    let mut metadata = response_metadata(&meta, settings);
    metadata.authoritative = res.authoritative;
    metadata.response_code = res.rcode;
    let parts = Parts {
        metadata,
        query: query.clone(),
        edns: response_edns(request.edns.as_ref()),
        answers: res.answers,
        authorities: res.authorities,
        additionals: res.additionals,
    };
    let enc = Encoding {
        max_size,
        compress: !settings.disable_compression,
        truncate_flag: settings.enable_truncate,
    };
    match fit(&parts, res.capped, &enc) {
        Some(bytes) => Outcome::Reply(bytes),
        None => Outcome::Drop,
    }
}

/// Largest answer for a transport and the query's EDNS record.
pub fn max_response_size(transport: Transport, edns: Option<&Edns>) -> usize {
    match (transport, edns) {
        (Transport::Tcp, _) => MAX_TCP_SIZE,
        (Transport::Udp, None) => PLAIN_UDP_SIZE,
        (Transport::Udp, Some(e)) => {
            usize::from(e.max_payload()).clamp(PLAIN_UDP_SIZE, MAX_UDP_SIZE)
        }
    }
}

fn response_metadata(request: &Metadata, settings: &Settings) -> Metadata {
    let mut m = Metadata::response_from_request(request);
    m.recursion_available = settings.recursion;
    m
}

/// The OPT record of an answer: sent only when the query had one (RFC 6891), with the
/// client's buffer size, never below 512 (smaller values mean 512).
fn response_edns(request: Option<&Edns>) -> Option<Edns> {
    request.map(|e| {
        let mut out = Edns::new();
        out.set_max_payload(e.max_payload().max(PLAIN_UDP_SIZE as u16));
        out.set_version(0);
        out
    })
}

/// An answer with only a header (the query could not be read, or is refused as a whole).
///
/// Without the question: it may be what could not be decoded.
fn bare_reply(request: &Metadata, rcode: ResponseCode, settings: &Settings) -> Outcome {
    let mut m = response_metadata(request, settings);
    m.response_code = rcode;
    let mut msg = Message::new(m.id, MessageType::Response, m.op_code);
    msg.metadata = m;
    match msg.to_vec() {
        Ok(bytes) => Outcome::Reply(bytes),
        Err(_) => Outcome::Drop,
    }
}

/// An answer without records: the question, the OPT record and `rcode`.
fn reply(request: &Message, rcode: ResponseCode, settings: &Settings, max_size: usize) -> Outcome {
    let mut metadata = response_metadata(&request.metadata, settings);
    metadata.response_code = rcode;
    let parts = Parts {
        metadata,
        query: request.queries.first().cloned().unwrap_or_default(),
        edns: response_edns(request.edns.as_ref()),
        answers: Vec::new(),
        authorities: Vec::new(),
        additionals: Vec::new(),
    };
    let enc = Encoding {
        max_size,
        compress: true,
        truncate_flag: false,
    };
    match fit(&parts, false, &enc) {
        Some(bytes) => Outcome::Reply(bytes),
        None => Outcome::Drop,
    }
}

/// SERVFAIL for a forwarded query whose recursors all failed.
pub fn servfail(fwd: &Forward, settings: &Settings) -> Option<Vec<u8>> {
    match reply(&fwd.query, ResponseCode::ServFail, settings, fwd.max_size) {
        Outcome::Reply(b) => Some(b),
        _ => None,
    }
}

/// Checks a recursor's answer to `fwd` and returns what to send the client: the answer as
/// it is when it fits, else an empty truncated answer (the client retries over TCP).
/// `None` when the bytes are not an answer to this query.
pub fn relay(answer: &[u8], fwd: &Forward, settings: &Settings) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(answer)).ok()?;
    // A stray answer (another query's, or a forged one) is not relayed: the ID must be
    // this query's.
    if header.metadata.message_type != MessageType::Response
        || header.metadata.id != fwd.query.metadata.id
    {
        return None;
    }
    if answer.len() <= fwd.max_size {
        return Some(answer.to_vec());
    }
    let mut metadata = response_metadata(&fwd.query.metadata, settings);
    metadata.response_code = header.metadata.response_code;
    metadata.truncation = true;
    let parts = Parts {
        metadata,
        query: fwd.query.queries.first().cloned().unwrap_or_default(),
        edns: response_edns(fwd.query.edns.as_ref()),
        answers: Vec::new(),
        authorities: Vec::new(),
        additionals: Vec::new(),
    };
    let enc = Encoding {
        max_size: fwd.max_size,
        compress: true,
        truncate_flag: true,
    };
    fit(&parts, false, &enc)
}

/// The sections of an answer before it is fitted to size.
struct Parts {
    metadata: Metadata,
    query: Query,
    edns: Option<Edns>,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

struct Encoding {
    max_size: usize,
    compress: bool,
    /// Set TC when answers were removed (`enable_truncate`).
    truncate_flag: bool,
}

/// What every encoding of one answer shares.
struct Frame<'a> {
    query: &'a Query,
    edns: Option<&'a Edns>,
    compress: bool,
}

impl Frame<'_> {
    /// Encodes the sections if the whole message fits in `limit` bytes.
    fn encode(
        &self,
        metadata: &Metadata,
        answers: &[Record],
        authorities: &[Record],
        additionals: &[&Record],
        limit: usize,
    ) -> Option<Vec<u8>> {
        let edns = self.edns;
        // Most answers are small; a TCP limit of 64 KiB is not worth allocating up front.
        let mut buf = Vec::with_capacity(limit.min(4096));
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.set_max_size(u16::try_from(limit).unwrap_or(u16::MAX));
        if !self.compress {
            encoder.set_name_encoding(NameEncoding::Uncompressed);
        }
        let header = emit_message_parts(
            metadata,
            &mut std::iter::once(self.query),
            &mut answers.iter(),
            &mut authorities.iter(),
            &mut additionals.iter().copied(),
            edns,
            None,
            &mut encoder,
        )
        .ok()?;
        // hickory stops at the size limit and writes what fitted: fewer records is "too large".
        let c = header.counts;
        let complete = usize::from(c.answers) == answers.len()
            && usize::from(c.authorities) == authorities.len()
            && usize::from(c.additionals) == additionals.len() + usize::from(edns.is_some());
        if !complete {
            return None;
        }
        (buf.len() <= limit).then_some(buf)
    }
}

/// The additional records that belong to `answers`: those owned by an answer's name or by
/// the target of an SRV, CNAME or NS answer.
///
/// When answers are trimmed their glue goes with them, so the additional section never
/// holds addresses for targets the client was not given.
fn referenced<'r>(answers: &[Record], additionals: &'r [Record]) -> Vec<&'r Record> {
    if additionals.is_empty() {
        return Vec::new();
    }
    let mut names: HashSet<&Name> = HashSet::with_capacity(answers.len() * 2);
    for a in answers {
        names.insert(&a.name);
        match &a.data {
            RData::SRV(srv) => {
                names.insert(&srv.target);
            }
            RData::CNAME(c) => {
                names.insert(&c.0);
            }
            RData::NS(ns) => {
                names.insert(&ns.0);
            }
            _ => {}
        }
    }
    additionals
        .iter()
        .filter(|r| names.contains(&r.name))
        .collect()
}

/// Encodes the answer within the size limit (see the module documentation). `capped`: the
/// resolver already left answers out.
fn fit(parts: &Parts, capped: bool, enc: &Encoding) -> Option<Vec<u8>> {
    let frame = Frame {
        query: &parts.query,
        edns: parts.edns.as_ref(),
        compress: enc.compress,
    };
    let max = enc.max_size;
    let mut metadata = parts.metadata;
    if capped && enc.truncate_flag {
        metadata.truncation = true;
    }
    let answers = &parts.answers;
    let n = answers.len();
    let all_extra: Vec<&Record> = parts.additionals.iter().collect();
    let encode_k = |k: usize, metadata: &Metadata, limit: usize| {
        let kept = &answers[..k];
        let extra = if k == n {
            all_extra.clone()
        } else {
            referenced(kept, &parts.additionals)
        };
        frame.encode(metadata, kept, &[], &extra, limit)
    };
    // Many answers: learn their size from two small prefixes, and skip the full encoding
    // when it clearly cannot fit.
    let model = (n > MODEL_MIN_ANSWERS)
        .then(|| SizeModel::learn(n, |k| encode_k(k, &metadata, MAX_TCP_SIZE).map(|b| b.len())))
        .flatten();
    // The eighth of slack covers the model's error: only a clear miss skips the full try.
    if model.is_none_or(|m| m.size(n) <= max + max / 8) {
        let full = frame.encode(&metadata, answers, &parts.authorities, &all_extra, max);
        if full.is_some() {
            return full;
        }
        // Too large: the authority section goes first, then answers with their additional
        // records.
        if !parts.authorities.is_empty()
            && let Some(bytes) = encode_k(n, &metadata, max)
        {
            return Some(bytes);
        }
    }
    if enc.truncate_flag {
        metadata.truncation = true;
    }
    if let Some(bytes) = largest_fit(n, max, model, |k, limit| encode_k(k, &metadata, limit)) {
        return Some(bytes);
    }
    // Not even one answer with its additional records: one answer alone, then none at all
    // (with TC, whatever the settings, so the client knows to retry over TCP).
    if let Some(first) = answers.first()
        && let Some(bytes) = frame.encode(&metadata, std::slice::from_ref(first), &[], &[], max)
    {
        return Some(bytes);
    }
    metadata.truncation = true;
    frame.encode(&metadata, &[], &[], &[], max)
}

/// Answer counts up to this are searched directly; above, a size model picks the count.
const MODEL_MIN_ANSWERS: usize = 24;

/// Encoded size as a function of the number of answers, from two measured prefixes: answer
/// records of one response have much the same size (same owner, same shape of data).
#[derive(Clone, Copy, Debug)]
struct SizeModel {
    k: usize,
    size: usize,
    per: usize,
}

impl SizeModel {
    /// Measures two prefixes of `n` answers. Past the first few dozen names, hickory's name
    /// compression stops remembering new suffixes and answers grow a little, so long lists
    /// are measured past that point.
    fn learn(n: usize, size_of: impl Fn(usize) -> Option<usize>) -> Option<SizeModel> {
        // Two prefixes far enough apart to average out names of different lengths.
        let (k1, k2) = if n > 100 { (40, 80) } else { (4, 20) };
        let s1 = size_of(k1)?;
        let s2 = size_of(k2)?;
        Some(SizeModel {
            k: k2,
            size: s2,
            per: (s2.saturating_sub(s1) / (k2 - k1)).max(1),
        })
    }

    /// Predicted size of `k` answers.
    fn size(&self, k: usize) -> usize {
        if k >= self.k {
            self.size + (k - self.k) * self.per
        } else {
            self.size.saturating_sub((self.k - k) * self.per)
        }
    }

    /// The model through its known point and a new measurement (`size` bytes for `k`).
    fn refit(&self, k: usize, size: usize) -> SizeModel {
        let per = if k > self.k {
            size.saturating_sub(self.size) / (k - self.k)
        } else {
            self.size.saturating_sub(size) / (self.k - k)
        };
        SizeModel {
            k,
            size,
            per: per.max(1),
        }
    }

    /// Predicted largest count that fits in `max`.
    fn count(&self, max: usize) -> usize {
        if max >= self.size {
            self.k + (max - self.size) / self.per
        } else {
            self.k.saturating_sub((self.size - max).div_ceil(self.per))
        }
    }
}

/// The encoding of the largest prefix of `n` answers (at least 1, fewer than `n`) that fits
/// in `max` bytes, where `encode_k(k, limit)` encodes the first `k` answers if they fit in
/// `limit`. With a model, a few secant steps on measured sizes find the count (answers grow
/// a little as name compression runs out of candidates, so the first guess is refined with
/// each measurement); a binary search finishes whatever is left.
fn largest_fit(
    n: usize,
    max: usize,
    model: Option<SizeModel>,
    encode_k: impl Fn(usize, usize) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    let (mut lo, mut hi) = (1usize, n); // the answer is in [lo, hi)
    let mut best: Option<Vec<u8>> = None;
    if let Some(mut m) = model
        && n > 1
    {
        // Four steps at most; the binary search below finishes whatever is left.
        let mut guess = m.count(max).clamp(lo, hi - 1);
        for _ in 0..4 {
            // Measure the real size (up to the protocol's limit) at the guess.
            let measured = encode_k(guess, MAX_TCP_SIZE);
            let size = measured.as_ref().map(Vec::len);
            match measured {
                Some(bytes) if bytes.len() <= max => {
                    lo = guess + 1;
                    let room = max - bytes.len();
                    best = Some(bytes);
                    if room < m.per {
                        return best;
                    }
                }
                _ => hi = guess,
            }
            if lo >= hi {
                break;
            }
            guess = match size {
                Some(size) if guess != m.k => {
                    m = m.refit(guess, size);
                    m.count(max).clamp(lo, hi - 1)
                }
                // Too large to measure (past 64 KiB): a small step down, as the guess is
                // usually only a few answers too many.
                _ => hi.saturating_sub(1 + (hi - lo) / 16).max(lo),
            };
        }
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match encode_k(mid, max) {
            Some(bytes) => {
                best = Some(bytes);
                lo = mid + 1;
            }
            None => hi = mid,
        }
    }
    best
}

/// The datacenter a query names when it is not this one (`web.service.dc2.consul`,
/// `n1.node.dc2.consul`, `q.query.dc2.consul`); `None` for anything else, malformed packets
/// included (the normal path answers those).
///
/// Such a question is answered by a server of that datacenter, which gets the packet as it came.
pub fn remote_datacenter(packet: &[u8], settings: &Settings) -> Option<String> {
    let request = Message::from_vec(packet).ok()?;
    let query = request.queries.first()?;
    let super::name::Zone::Domain { labels, .. } = super::name::zone_of(query.name(), settings)
    else {
        return None;
    };
    let locality = match super::name::parse(&labels, query.query_type()) {
        super::name::Lookup::Service { locality, .. }
        | super::name::Lookup::Node { locality, .. }
        | super::name::Lookup::Query { locality, .. } => locality,
        _ => return None,
    };
    match locality {
        super::name::Locality::Datacenter(dc) if !dc.eq_ignore_ascii_case(&settings.datacenter) => {
            Some(dc)
        }
        _ => None,
    }
}

/// A SERVFAIL answer to `packet` (a remote datacenter that could not answer), or `None` when
/// the packet is not a query that can be answered.
pub fn servfail_for(packet: &[u8], transport: Transport, settings: &Settings) -> Option<Vec<u8>> {
    let request = Message::from_vec(packet).ok()?;
    let max_size = max_response_size(transport, request.edns.as_ref());
    servfail(
        &Forward {
            query: request,
            max_size,
        },
        settings,
    )
}
