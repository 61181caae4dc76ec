//! Tests of the GraphQL executor over an in-memory source.
