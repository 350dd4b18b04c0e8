//! Rows written with `COPY ... FROM STDIN (FORMAT binary)`, each value in
//! the binary form sqlx binds it in.
//!
//! A long run of rows known to be new (a bulk import, a replay) is loaded
//! this way rather than by an `insert ... select from unnest(...)` of one
//! array per column: PostgreSQL then neither parses thirteen arrays nor
//! runs a query over them, and stores the rows a page at a time. The rows
//! are sent a part at a time as they are framed ([`CopyIn`]), so that
//! PostgreSQL stores one part while the next is encoded.

use crate::{Error, Result};
use sqlx::postgres::{PgArgumentBuffer, PgCopyIn};
use sqlx::{Encode, PgConnection, Postgres};

/// The format's signature, then no flags and no header extension.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The field count that ends the data.
const TRAILER: i16 = -1;

/// Rows in PostgreSQL's binary COPY format.
#[derive(Default)]
pub struct BinaryRows {
    buf: PgArgumentBuffer,
    /// Where the open row's field count goes, and its fields so far.
    open: Option<(usize, i16)>,
}

impl BinaryRows {
    fn new() -> Self {
        let mut rows = Self::default();
        rows.buf.extend_from_slice(HEADER);
        rows
    }

    /// Starts a row: the calls of [`Self::value`] and [`Self::jsonb`] that
    /// follow are its fields, in the statement's column order.
    fn row(&mut self) {
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
}

/// How many bytes of framed rows [`CopyIn`] gathers before sending them.
const PART: usize = 128 * 1024;

/// A `COPY ... FROM STDIN (FORMAT binary)` under way on a connection: rows
/// framed as in [`BinaryRows`] and sent every [`PART`] bytes.
pub struct CopyIn<'c> {
    sink: PgCopyIn<&'c mut PgConnection>,
    rows: BinaryRows,
}

impl<'c> CopyIn<'c> {
    /// Starts `statement` on `conn`.
    pub async fn start(conn: &'c mut PgConnection, statement: &str) -> Result<Self> {
        Ok(Self { sink: conn.copy_in_raw(statement).await?, rows: BinaryRows::new() })
    }

    /// Starts a row (see [`BinaryRows::row`]) and returns it to write its
    /// fields in; the rows before it are sent first if they fill a part.
    pub async fn row(&mut self) -> Result<&mut BinaryRows> {
        if self.rows.buf.len() >= PART {
            self.rows.close_row();
            self.sink.send(self.rows.buf.as_slice()).await?;
            self.rows.buf.clear();
        }
        self.rows.row();
        Ok(&mut self.rows)
    }

    /// Ends the COPY with what writing its rows came to: sends the rest and
    /// returns how many rows were stored, or, after an error in `written`,
    /// aborts it (so the connection is not left mid-COPY) and returns that
    /// error. A row the server refuses (a unique violation) fails here.
    pub async fn end(mut self, written: Result<()>) -> Result<u64> {
        let sent = match written {
            Ok(()) => {
                self.rows.close_row();
                self.rows.buf.extend_from_slice(&TRAILER.to_be_bytes());
                self.sink.send(self.rows.buf.as_slice()).await.map(|_| ()).map_err(Error::from)
            }
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => Ok(self.sink.finish().await?),
            Err(e) => {
                let _ = self.sink.abort(e.to_string()).await;
                Err(e)
            }
        }
    }
}
