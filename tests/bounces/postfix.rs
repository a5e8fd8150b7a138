//! Real bounces: a private Postfix that hosts the campaign's domain.
