//! Delivering letters: the sinks they go to ([`sink`]: files; [`smtp`]),
//! DKIM signing ([`dkim`]), the send journal ([`journal`]), the render
//! pipeline ([`run`]) and sending ([`send`]: plan, then deliver); what
//! comes back after ([`bounces`]). Uses
//! [`crate::compose`]; nothing here is used by it.

pub mod bounces;
pub mod dkim;
pub mod journal;
pub mod run;
pub mod send;
pub mod sendmail;
pub mod sink;
pub mod smtp;
