//! Rows written with `COPY ... FROM STDIN (FORMAT binary)`, each value in
//! the binary form sqlx binds it in.
//!
//! A long run of rows known to be new (a bulk import, a replay) is loaded
//! this way rather than by an `insert ... select from unnest(...)` of one
//! array per column: PostgreSQL then neither parses thirteen arrays nor
//! runs a query over them, and stores the rows a page at a time.

use crate::{Error, Result};
use sqlx::postgres::PgArgumentBuffer;
use sqlx::{Encode, PgConnection, Postgres};

/// The format's signature, then no flags and no header extension.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The field count that ends the data.
const TRAILER: i16 = -1;

/// Rows in PostgreSQL's binary COPY format, ready to send.
#[derive(Default)]
pub struct BinaryRows {
    buf: PgArgumentBuffer,
    /// Where the open row's field count goes, and its fields so far.
    open: Option<(usize, i16)>,
}

impl BinaryRows {
    pub fn new() -> Self {
        let mut rows = Self::default();
        rows.buf.extend_from_slice(HEADER);
        rows
    }

    /// Starts a row: the calls of [`Self::value`] and [`Self::jsonb`] that
    /// follow are its fields, in the statement's column order.
    pub fn row(&mut self) {
        self.close_row();
        self.open = Some((self.buf.len(), 0));
        self.buf.extend_from_slice(&0_i16.to_be_bytes());
    }

    /// Writes the open row's field count.
    fn close_row(&mut self) {
        if let Some((at, fields)) = self.open.take() {
            self.buf[at..at + 2].copy_from_slice(&fields.to_be_bytes());
        }
    }

    /// Counts a field of the open row.
    fn field(&mut self) {
        if let Some((_, fields)) = &mut self.open {
            *fields += 1;
        }
    }

    /// Appends one value (`None` is NULL).
    pub fn value<'q, T: Encode<'q, Postgres>>(&mut self, value: &T) -> Result<()> {
        self.field();
        let start = self.buf.len();
        self.buf.extend_from_slice(&0_i32.to_be_bytes());
        let null = value.encode_by_ref(&mut self.buf).map_err(|e| Error::Database(sqlx::Error::Encode(e)))?;
        let length = match null {
            sqlx::encode::IsNull::Yes => -1,
            sqlx::encode::IsNull::No => i32::try_from(self.buf.len() - start - 4)
                .map_err(|_| Error::Database(sqlx::Error::Encode("a value over 2 GiB".into())))?,
        };
        self.buf[start..start + 4].copy_from_slice(&length.to_be_bytes());
        Ok(())
    }

    /// Appends a JSON document, already serialised, to a `jsonb` column:
    /// its binary form is a version byte (1) and the text.
    pub fn jsonb(&mut self, json: &str) -> Result<()> {
        self.field();
        let length = i32::try_from(json.len() + 1)
            .map_err(|_| Error::Database(sqlx::Error::Encode("a value over 2 GiB".into())))?;
        self.buf.extend_from_slice(&length.to_be_bytes());
        self.buf.push(1);
        self.buf.extend_from_slice(json.as_bytes());
        Ok(())
    }

    /// Sends the rows with `statement` (a `COPY ... FROM STDIN (FORMAT
    /// binary)`) on `conn`; returns how many were stored.
    pub async fn copy(mut self, conn: &mut PgConnection, statement: &str) -> Result<u64> {
        self.close_row();
        self.buf.extend_from_slice(&TRAILER.to_be_bytes());
        let mut copy = conn.copy_in_raw(statement).await?;
        // A row the server refuses (a unique violation) fails `finish`.
        match copy.send(self.buf.as_slice()).await {
            Ok(_) => Ok(copy.finish().await?),
            Err(e) => {
                // Ends the COPY, so the connection can be used again if
                // it is still there.
                let _ = copy.abort(e.to_string()).await;
                Err(e.into())
            }
        }
    }
}
