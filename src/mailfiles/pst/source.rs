//! What mailferry needs of outlook-pst: a file opened for reading only,
//! its folders and items, and their properties by tag or by name, with
//! ANSI strings decoded in the item's own code page.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::rc::Rc;

use chrono::{DateTime, Utc};
use encoding_rs::Encoding;
use outlook_pst::ltp::prop_context::PropertyValue;
use outlook_pst::ltp::table_context::TableContext;
use outlook_pst::messaging::attachment::AttachmentProperties;
use outlook_pst::messaging::attachment::{AnsiAttachment, Attachment, UnicodeAttachment};
use outlook_pst::messaging::folder::{Folder, FolderProperties};
use outlook_pst::messaging::message::{AnsiMessage, Message, MessageProperties, UnicodeMessage};
use outlook_pst::messaging::named_prop::{NamedPropertyGuid, NamedPropertyId};
use outlook_pst::messaging::store::{AnsiStore, Store, UnicodeStore};
use outlook_pst::ndb::node_id::NodeId;
use outlook_pst::{AnsiPstFile, UnicodePstFile};

/// An Outlook data file: Unicode (Outlook 2003 and later) or ANSI (97–2002).
pub enum OutlookFile {
    Unicode(Rc<UnicodeStore>),
    Ansi(Rc<AnsiStore>),
}

/// A message as opened from the file; its attachments are reached through it.
pub enum OpenedMessage {
    Unicode(Rc<UnicodeMessage>),
    Ansi(Rc<AnsiMessage>),
}

impl OutlookFile {
    /// Opens `path` without a write handle (outlook-pst's `open` asks for
    /// one, `read_from` does not).
    pub fn open(path: &Path) -> io::Result<OutlookFile> {
        let unicode = UnicodePstFile::read_from(Box::new(File::open(path)?));
        match unicode {
            Ok(pst) => Ok(OutlookFile::Unicode(UnicodeStore::read(Rc::new(pst))?)),
            // Only the header says which format it is; past it, an error
            // is the file's, not a reason to try the other format.
            Err(unicode_error) => match AnsiPstFile::read_from(Box::new(File::open(path)?)) {
                Ok(pst) => Ok(OutlookFile::Ansi(AnsiStore::read(Rc::new(pst))?)),
                Err(_) => Err(unicode_error),
            },
        }
    }

    fn store(&self) -> Rc<dyn Store> {
        match self {
            OutlookFile::Unicode(s) => s.clone(),
            OutlookFile::Ansi(s) => s.clone(),
        }
    }

    /// PidTagPstPassword: a CRC of the password, 0 when there is none.
    /// The data is not encrypted with it, so it is checked here.
    pub fn has_password(&self) -> bool {
        matches!(
            self.store().properties().get(0x67FF),
            Some(PropertyValue::Integer32(crc)) if *crc != 0
        )
    }

    /// The top of the personal folders (the IPM subtree): what Outlook shows.
    pub fn top_folder(&self) -> io::Result<Rc<dyn Folder>> {
        let store = self.store();
        let id = store.properties().ipm_sub_tree_entry_id()?;
        store.open_folder(&id)
    }

    pub fn folder(&self, node: u32) -> io::Result<Rc<dyn Folder>> {
        let store = self.store();
        let id = store.properties().make_entry_id(NodeId::from(node))?;
        store.open_folder(&id)
    }

    pub fn message(&self, node: u32) -> io::Result<OpenedMessage> {
        let id = self
            .store()
            .properties()
            .make_entry_id(NodeId::from(node))?;
        Ok(match self {
            OutlookFile::Unicode(s) => {
                OpenedMessage::Unicode(UnicodeMessage::read(s.clone(), &id, None)?)
            }
            OutlookFile::Ansi(s) => OpenedMessage::Ansi(AnsiMessage::read(s.clone(), &id, None)?),
        })
    }

    /// The file's map of named properties (PidLid*), which differs per file.
    pub fn named_ids(&self) -> io::Result<NamedIds> {
        let map = self.store().named_property_map()?;
        let guids = map.properties().stream_guid()?;
        let mut named = NamedIds::default();
        for entry in map.properties().stream_entry()? {
            match (entry.id(), entry.guid()) {
                // GuidIndex(i) is the i-th of stream_guid (lookup_guid adds 3 again).
                (NamedPropertyId::Number(lid), NamedPropertyGuid::GuidIndex(i)) => {
                    if let Some(g) = guids.get(usize::from(i)) {
                        let set = PropertySet(g.data1(), g.data2(), g.data3(), *g.data4());
                        named.numbers.insert((set, lid), entry.prop_id());
                    }
                }
                (NamedPropertyId::StringOffset(at), NamedPropertyGuid::PublicStrings) => {
                    if let Ok(name) = map.properties().lookup_string(at) {
                        let units: Vec<u16> = name
                            .buffer()
                            .chunks_exact(2)
                            .map(|b| u16::from_le_bytes([b[0], b[1]]))
                            .collect();
                        named
                            .public_strings
                            .insert(String::from_utf16_lossy(&units), entry.prop_id());
                    }
                }
                _ => {}
            }
        }
        Ok(named)
    }
}

impl OpenedMessage {
    pub fn message(&self) -> &dyn Message {
        match self {
            OpenedMessage::Unicode(m) => m.as_ref(),
            OpenedMessage::Ansi(m) => m.as_ref(),
        }
    }

    pub fn attachment(&self, node: u32) -> io::Result<Rc<dyn Attachment>> {
        Ok(match self {
            OpenedMessage::Unicode(m) => {
                UnicodeAttachment::read(m.clone(), NodeId::from(node), None)?
            }
            OpenedMessage::Ansi(m) => AnsiAttachment::read(m.clone(), NodeId::from(node), None)?,
        })
    }
}

/// The row ids of a table (folders of a hierarchy, items of a contents
/// table, attachments): each the node id of what the row stands for.
pub fn row_ids(table: Option<&Rc<dyn TableContext>>) -> Vec<u32> {
    table.map_or_else(Vec::new, |t| {
        t.rows_matrix().map(|r| u32::from(r.id())).collect()
    })
}

/// A row of a table: the node id of what it stands for, and its columns.
pub struct Row {
    pub id: u32,
    values: HashMap<u16, PropertyValue>,
}

/// Each row of a table; a value that cannot be read is left out of its row.
pub fn rows(table: Option<&Rc<dyn TableContext>>) -> Vec<Row> {
    let Some(table) = table else {
        return Vec::new();
    };
    let context = table.context();
    table
        .rows_matrix()
        .map(|row| {
            let values = row.columns(context).unwrap_or_default();
            let values = context
                .columns()
                .iter()
                .zip(values)
                .filter_map(|(column, value)| {
                    let value = table.read_column(&value?, column.prop_type()).ok()?;
                    Some((column.prop_id(), value))
                })
                .collect();
            Row {
                id: u32::from(row.id()),
                values,
            }
        })
        .collect()
}

/// A property set of named properties (MS-OXPROPS 1.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PropertySet(u32, u16, u16, [u8; 8]);

const MAPI_GUID_TAIL: [u8; 8] = [0xC0, 0, 0, 0, 0, 0, 0, 0x46];
pub const PSETID_APPOINTMENT: PropertySet = PropertySet(0x0006_2002, 0, 0, MAPI_GUID_TAIL);
pub const PSETID_TASK: PropertySet = PropertySet(0x0006_2003, 0, 0, MAPI_GUID_TAIL);
pub const PSETID_ADDRESS: PropertySet = PropertySet(0x0006_2004, 0, 0, MAPI_GUID_TAIL);
pub const PSETID_COMMON: PropertySet = PropertySet(0x0006_2008, 0, 0, MAPI_GUID_TAIL);
/// PSETID_Meeting: PidLidGlobalObjectId, a meeting's UID.
pub const PSETID_MEETING: PropertySet = PropertySet(
    0x6ED8_DA90,
    0x450B,
    0x101B,
    [0x98, 0xDA, 0x00, 0xAA, 0x00, 0x3F, 0x13, 0x05],
);

/// Where a file keeps each named property it uses.
#[derive(Default)]
pub struct NamedIds {
    /// (set, LID) → tag.
    numbers: HashMap<(PropertySet, u32), u16>,
    /// Names in PS_PUBLIC_STRINGS (such as "Keywords") → tag.
    public_strings: HashMap<String, u16>,
}

/// A property: a fixed tag, or a named one the file maps to a tag.
#[derive(Debug, Clone, Copy)]
pub enum Tag {
    Id(u16),
    Named(PropertySet, u32),
    PublicString(&'static str),
}

/// PidNameKeywords: an item's categories.
pub const KEYWORDS: Tag = Tag::PublicString("Keywords");

/// Anything that holds properties by tag.
pub trait Lookup {
    fn value(&self, id: u16) -> Option<&PropertyValue>;
}

impl Lookup for MessageProperties {
    fn value(&self, id: u16) -> Option<&PropertyValue> {
        self.get(id)
    }
}

impl Lookup for AttachmentProperties {
    fn value(&self, id: u16) -> Option<&PropertyValue> {
        self.get(id)
    }
}

impl Lookup for FolderProperties {
    fn value(&self, id: u16) -> Option<&PropertyValue> {
        self.get(id)
    }
}

impl Lookup for Row {
    fn value(&self, id: u16) -> Option<&PropertyValue> {
        self.values.get(&id)
    }
}

/// An item's (or a row's, or an attachment's) properties, read as Rust
/// values.
#[derive(Clone, Copy)]
pub struct Props<'a> {
    values: &'a dyn Lookup,
    names: &'a NamedIds,
    /// For PtypString8 values: the item's code page.
    encoding: &'static Encoding,
}

impl<'a> Props<'a> {
    /// `values` of an item whose strings are in its own code page.
    pub fn of(values: &'a dyn Lookup, names: &'a NamedIds) -> Props<'a> {
        let mut props = Props {
            values,
            names,
            encoding: encoding_rs::WINDOWS_1252,
        };
        // PidTagMessageCodepage, else PidTagInternetCodepage.
        props.encoding = [0x3FFD, 0x3FDE]
            .into_iter()
            .filter_map(|id| props.int(Tag::Id(id)))
            .find_map(encoding_of_codepage)
            .unwrap_or(encoding_rs::WINDOWS_1252);
        props
    }

    /// Other properties (a recipient row, an attachment) read with this
    /// item's code page.
    pub fn with<'b>(&self, values: &'b dyn Lookup) -> Props<'b>
    where
        'a: 'b,
    {
        Props {
            values,
            names: self.names,
            encoding: self.encoding,
        }
    }

    pub fn value(&self, tag: Tag) -> Option<&'a PropertyValue> {
        let id = match tag {
            Tag::Id(id) => id,
            Tag::Named(set, lid) => *self.names.numbers.get(&(set, lid))?,
            Tag::PublicString(name) => *self.names.public_strings.get(name)?,
        };
        self.values.value(id)
    }

    /// A string, or `None` when absent or empty.
    pub fn text(&self, tag: Tag) -> Option<String> {
        let text = match self.value(tag)? {
            PropertyValue::Unicode(v) => String::from_utf16_lossy(v.buffer()),
            PropertyValue::String8(v) => self.decode(v.buffer()),
            _ => return None,
        };
        let text = text.trim_end_matches('\0').to_string();
        (!text.trim().is_empty()).then_some(text)
    }

    /// A multi-valued string property, empty values left out.
    pub fn texts(&self, tag: Tag) -> Vec<String> {
        let all: Vec<String> = match self.value(tag) {
            Some(PropertyValue::MultipleUnicode(v)) => v
                .iter()
                .map(|s| String::from_utf16_lossy(s.buffer()))
                .collect(),
            Some(PropertyValue::MultipleString8(v)) => {
                v.iter().map(|s| self.decode(s.buffer())).collect()
            }
            _ => Vec::new(),
        };
        all.into_iter().filter(|s| !s.trim().is_empty()).collect()
    }

    /// Bytes in this item's code page, as text.
    pub fn decode(&self, bytes: &[u8]) -> String {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        self.encoding
            .decode_without_bom_handling(&bytes[..end])
            .0
            .into_owned()
    }

    pub fn bytes(&self, tag: Tag) -> Option<&'a [u8]> {
        match self.value(tag)? {
            PropertyValue::Binary(v) => Some(v.buffer()),
            _ => None,
        }
    }

    pub fn binaries(&self, tag: Tag) -> Vec<&'a [u8]> {
        match self.value(tag) {
            Some(PropertyValue::MultipleBinary(v)) => v.iter().map(|b| b.buffer()).collect(),
            _ => Vec::new(),
        }
    }

    pub fn int(&self, tag: Tag) -> Option<i64> {
        match self.value(tag)? {
            PropertyValue::Integer16(v) => Some(i64::from(*v)),
            PropertyValue::Integer32(v) => Some(i64::from(*v)),
            PropertyValue::Integer64(v) => Some(*v),
            _ => None,
        }
    }

    pub fn float(&self, tag: Tag) -> Option<f64> {
        match self.value(tag)? {
            PropertyValue::Floating64(v) | PropertyValue::FloatingTime(v) => Some(*v),
            PropertyValue::Floating32(v) => Some(f64::from(*v)),
            _ => None,
        }
    }

    pub fn flag(&self, tag: Tag) -> Option<bool> {
        match self.value(tag)? {
            PropertyValue::Boolean(v) => Some(*v),
            _ => self.int(tag).map(|v| v != 0),
        }
    }

    pub fn time(&self, tag: Tag) -> Option<DateTime<Utc>> {
        match self.value(tag)? {
            PropertyValue::Time(v) => filetime(*v),
            _ => None,
        }
    }
}

/// A FILETIME (100 ns since 1601) as an instant; 0 and Outlook's "none"
/// (year 4501) are `None`.
pub fn filetime(ticks: i64) -> Option<DateTime<Utc>> {
    use chrono::Datelike as _;
    const UNIX_EPOCH_TICKS: i64 = 116_444_736_000_000_000;
    if ticks <= 0 {
        return None;
    }
    let t = DateTime::from_timestamp((ticks - UNIX_EPOCH_TICKS).div_euclid(10_000_000), 0)?;
    (t.year() < 4500).then_some(t)
}

/// The encoding Windows means by code page `cp`, where encoding_rs has it.
pub fn encoding_of_codepage(cp: i64) -> Option<&'static Encoding> {
    let label = match cp {
        65001 => "utf-8",
        1200 => "utf-16le",
        1201 => "utf-16be",
        20127 | 1252 => "windows-1252",
        28591 => "iso-8859-1",
        874 | 1250 | 1251 | 1253 | 1254 | 1255 | 1256 | 1257 | 1258 => {
            return Encoding::for_label(format!("windows-{cp}").as_bytes());
        }
        28592..=28606 => return Encoding::for_label(format!("iso-8859-{}", cp - 28590).as_bytes()),
        932 => "shift_jis",
        936 | 54936 => "gb18030",
        949 => "euc-kr",
        950 => "big5",
        20866 => "koi8-r",
        21866 => "koi8-u",
        50220..=50222 => "iso-2022-jp",
        51932 => "euc-jp",
        51949 => "euc-kr",
        10000 => "macintosh",
        866 => "ibm866",
        _ => return None,
    };
    Encoding::for_label(label.as_bytes())
}
