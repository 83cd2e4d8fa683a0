//! IMAP client: TCP + rustls + async-imap, LOGIN or AUTHENTICATE PLAIN,
//! COMPRESS=DEFLATE, CONDSTORE/QRESYNC, and modified UTF-7 folder names.

pub mod mutf7;
mod session;
pub mod tls;
mod wire;

pub use session::{
    Capabilities, FetchedMessage, FolderStatus, ImapError, ImapSession, ListedFolder, LoginRefused,
    Selected, parse_internal_date, quote,
};
pub use wire::WireStats;
