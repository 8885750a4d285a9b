//! The hickory-server `RequestHandler`: one parsed request in, one reply out.
//!
//! This module owns the message-level rules: opcode, question count, class, EDNS
//! (version, UDP payload size), the AA flag, SOA in the authority section of negative
//! answers, and counting replies by rcode. What a name holds is `zone`'s business. Each
//! query loads the snapshot once and drops the guard before sending (never across an
//! `.await`). It must not panic on anything a client sends: hickory has already parsed
//! the message (an unparsable one gets FORMERR from hickory, a response is dropped).

use arc_swap::{ArcSwap, ArcSwapOption};
use std::iter;
use std::sync::Arc;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::{DNSClass, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};

use super::zone::{Apex, ApexPart, Resolution, next_serial, resolve};
use crate::config::DnsConfig;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// The largest UDP reply we send, whatever the client offers: the DNS Flag Day 2020
/// value, which avoids IP fragmentation on nearly every path. Larger answers are
/// truncated (TC) and the client retries over TCP.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Answers queries for the hosting zone from the current snapshot. Clones share
/// everything.
#[derive(Clone)]
pub struct DnsHandler {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    /// The SOA/NS records of the latest generation seen, rebuilt when it changes.
    apex: Arc<ArcSwapOption<Apex>>,
}

/// One reply, owning its records, ready to be encoded against the request's question.
pub struct Reply {
    metadata: Metadata,
    edns: Option<Edns>,
    answers: Vec<Record>,
    apex: Option<Arc<Apex>>,
    apex_answers: ApexPart,
    soa_in_authority: bool,
}

impl Reply {
    fn new(request: &Metadata, edns: Option<Edns>) -> Reply {
        Reply {
            metadata: Metadata::response_from_request(request),
            edns,
            answers: Vec::new(),
            apex: None,
            apex_answers: ApexPart::default(),
            soa_in_authority: false,
        }
    }

    fn error(mut self, code: ResponseCode) -> Reply {
        self.metadata.response_code = code;
        self
    }

    pub fn response_code(&self) -> ResponseCode {
        self.metadata.response_code
    }

    pub fn answers(&self) -> impl Iterator<Item = &Record> {
        let apex = self.apex.as_deref();
        let soa = apex.filter(|_| self.apex_answers.soa).map(|a| &a.soa);
        let ns = apex
            .filter(|_| self.apex_answers.ns)
            .into_iter()
            .flat_map(|a| a.ns.iter());
        self.answers.iter().chain(soa).chain(ns)
    }

    /// The message to encode: hickory applies the size limit (UDP: the EDNS payload, or
    /// 512 without EDNS) and sets TC when records do not fit.
    pub fn response<'q>(
        &'q self,
        queries: &'q Queries,
    ) -> MessageResponse<
        'q,
        'q,
        impl Iterator<Item = &'q Record> + Send + 'q,
        impl Iterator<Item = &'q Record> + Send + 'q,
        impl Iterator<Item = &'q Record> + Send + 'q,
        impl Iterator<Item = &'q Record> + Send + 'q,
    > {
        let authority = self
            .apex
            .as_deref()
            .filter(|_| self.soa_in_authority)
            .map(|a| &a.soa);
        MessageResponseBuilder::new(queries, self.edns.as_ref()).build(
            self.metadata,
            self.answers(),
            authority,
            iter::empty(),
            iter::empty(),
        )
    }
}

impl DnsHandler {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, metrics: Arc<Metrics>) -> DnsHandler {
        DnsHandler {
            snapshot,
            metrics,
            apex: Arc::new(ArcSwapOption::empty()),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Builds the reply to `request`. Synchronous and allocation-light: the benches
    /// call it directly.
    pub fn reply(&self, request: &Request) -> Reply {
        let edns = request.edns.as_ref().map(|e| {
            let mut ours = Edns::new();
            ours.set_max_payload(e.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            ours.set_version(0);
            ours
        });
        let reply = Reply::new(&request.metadata, edns);
        if request.metadata.op_code != OpCode::Query {
            return reply.error(ResponseCode::NotImp);
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return reply.error(ResponseCode::BADVERS);
        }
        let [query] = request.queries.queries() else {
            return reply.error(ResponseCode::FormErr);
        };
        let qtype = query.query_type();
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY)
            || matches!(qtype, RecordType::AXFR | RecordType::IXFR)
        {
            return reply.error(ResponseCode::Refused);
        }
        let snapshot = self.snapshot.load();
        let Some(dns) = snapshot.config.dns.as_ref() else {
            return reply.error(ResponseCode::Refused);
        };
        self.answer(reply, &snapshot, dns, query.original().name(), qtype)
    }

    fn answer(
        &self,
        mut reply: Reply,
        snapshot: &Snapshot,
        dns: &DnsConfig,
        owner: &hickory_server::proto::rr::Name,
        qtype: RecordType,
    ) -> Reply {
        let Some(resolution) = resolve(snapshot, dns, owner, qtype) else {
            return reply.error(ResponseCode::Refused);
        };
        let Some(apex) = self.apex(snapshot, dns) else {
            return reply.error(ResponseCode::ServFail);
        };
        reply.metadata.authoritative = true;
        match resolution {
            Resolution::NxDomain => {
                reply.metadata.response_code = ResponseCode::NXDomain;
                reply.soa_in_authority = true;
            }
            Resolution::Found { records, apex } => {
                reply.soa_in_authority = records.is_empty() && apex == ApexPart::default();
                reply.answers = records;
                reply.apex_answers = apex;
            }
        }
        reply.apex = Some(apex);
        reply
    }

    /// The apex records for this snapshot's generation (a new serial when it changed).
    fn apex(&self, snapshot: &Snapshot, dns: &DnsConfig) -> Option<Arc<Apex>> {
        let current = self.apex.load();
        if let Some(a) = current.as_ref()
            && a.generation == snapshot.generation
        {
            return Some(a.clone());
        }
        let serial = next_serial(current.as_ref().map(|a| a.serial), crate::tls::unix_now());
        let fresh = match Apex::new(dns, snapshot.generation, serial) {
            Ok(a) => Arc::new(a),
            Err(e) => {
                tracing::error!(error = %e, zone = %dns.zone, "cannot build the zone's SOA/NS records");
                return None;
            }
        };
        // Only a newer generation replaces the cache; a racing query for the same one
        // built the same records.
        if current
            .as_ref()
            .is_none_or(|a| a.generation < fresh.generation)
        {
            self.apex.compare_and_swap(&current, Some(fresh.clone()));
        }
        Some(fresh)
    }

    fn count(&self, code: ResponseCode) {
        let c = &self.metrics.dns;
        match code {
            ResponseCode::NoError => c.noerror.inc(),
            ResponseCode::NXDomain => c.nxdomain.inc(),
            ResponseCode::Refused => c.refused.inc(),
            ResponseCode::FormErr => c.formerr.inc(),
            ResponseCode::NotImp => c.notimp.inc(),
            ResponseCode::BADVERS => c.badvers.inc(),
            _ => c.servfail.inc(),
        };
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let reply = self.reply(request);
        self.count(reply.response_code());
        match response_handle
            .send_response(reply.response(&request.queries))
            .await
        {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(src = %request.src(), error = %e, "DNS reply not sent");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}
