//! The one way a command ends: a typed result that reads as text and as
//! JSON ([`Outcome`]), printed by [`emit`], which returns its exit code.

use std::fmt::Display;

use anyhow::Result;
use serde::Serialize;

use super::{EXIT_INCOMPLETE, EXIT_OK, exit_code};
use mailferry::cutover::CutoverRun;
use mailferry::graph::ItemsUploaded;
use mailferry::graph::check::ItemsChecked;
use mailferry::mirror::MirrorSummary;
use mailferry::preflight::Preflight;
use mailferry::store::verify::Verified;
use mailferry::upload::UploadSummary;
use mailferry::upload::check::TargetCheck;

/// A command's result: text for people (Display), JSON for scripts
/// (Serialize), and the exit code that sums it up.
pub trait Outcome: Serialize + Display {
    fn exit_code(&self) -> i32;
}

/// How a result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Text,
    /// Indented JSON, for one result.
    Json,
    /// JSON on one line, for a result repeated by a schedule (`sync --every`).
    JsonLine,
}

impl Form {
    pub fn json(json: bool) -> Form {
        if json { Form::Json } else { Form::Text }
    }
}

/// Prints `outcome` on stdout in `form`; returns its exit code.
pub fn emit(outcome: &impl Outcome, form: Form) -> Result<i32> {
    match form {
        Form::Text => print!("{outcome}"),
        Form::Json => println!("{}", serde_json::to_string_pretty(outcome)?),
        Form::JsonLine => println!("{}", serde_json::to_string(outcome)?),
    }
    Ok(outcome.exit_code())
}

fn complete_or_not(complete: bool) -> i32 {
    if complete { EXIT_OK } else { EXIT_INCOMPLETE }
}

impl Outcome for MirrorSummary {
    fn exit_code(&self) -> i32 {
        exit_code(
            self.all_complete(),
            self.accounts.iter().map(|a| a.error_kind),
        )
    }
}

/// The mail's part, then the items' part; `neither` when there is none.
fn mail_then_items(
    f: &mut std::fmt::Formatter<'_>,
    mail: Option<&impl Display>,
    items: Option<&impl Display>,
    neither: &str,
) -> std::fmt::Result {
    if let Some(mail) = mail {
        write!(f, "{mail}")?;
    }
    if let Some(items) = items {
        write!(f, "{items}")?;
    }
    if mail.is_none() && items.is_none() {
        writeln!(f, "{neither}")?;
    }
    Ok(())
}

/// An upload: the mail, then the contacts, events and tasks.
#[derive(Serialize)]
pub struct Uploaded {
    /// None with `--items-only`.
    #[serde(flatten)]
    pub mail: Option<UploadSummary>,
    /// None when none were sent (none imported, `--mail-only`, a dry run).
    pub items: Option<ItemsUploaded>,
}

impl Uploaded {
    fn complete(&self) -> bool {
        self.mail.as_ref().is_none_or(UploadSummary::all_complete)
            && self.items.as_ref().is_none_or(ItemsUploaded::is_clean)
    }
}

impl Display for Uploaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        mail_then_items(
            f,
            self.mail.as_ref(),
            self.items.as_ref(),
            "No contacts, events or tasks to upload.",
        )
    }
}

impl Outcome for Uploaded {
    fn exit_code(&self) -> i32 {
        exit_code(
            self.complete(),
            self.mail
                .iter()
                .flat_map(|m| m.accounts.iter().map(|a| a.error_kind)),
        )
    }
}

/// `verify --target`: the mail read back, then the contacts, events and tasks.
#[derive(Serialize)]
pub struct TargetsChecked {
    /// None with `--items-only`.
    #[serde(flatten)]
    pub mail: Option<TargetCheck>,
    pub items: Option<ItemsChecked>,
}

impl Display for TargetsChecked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        mail_then_items(
            f,
            self.mail.as_ref(),
            self.items.as_ref(),
            "No contacts, events or tasks to read back.",
        )
    }
}

impl Outcome for TargetsChecked {
    fn exit_code(&self) -> i32 {
        complete_or_not(
            self.mail.as_ref().is_none_or(TargetCheck::all_present)
                && self.items.as_ref().is_none_or(ItemsChecked::all_present),
        )
    }
}

impl Outcome for Preflight {
    fn exit_code(&self) -> i32 {
        complete_or_not(self.all_go())
    }
}

impl Outcome for Verified {
    fn exit_code(&self) -> i32 {
        complete_or_not(self.faults.is_empty())
    }
}

/// A mirror then an upload (`sync`).
#[derive(Serialize)]
pub struct Synced {
    pub mirror: MirrorSummary,
    pub upload: Uploaded,
}

impl Display for Synced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n{}", self.mirror, self.upload)
    }
}

impl Outcome for Synced {
    fn exit_code(&self) -> i32 {
        exit_code(
            self.mirror.all_complete() && self.upload.complete(),
            self.mirror.accounts.iter().map(|a| a.error_kind).chain(
                self.upload
                    .mail
                    .iter()
                    .flat_map(|m| m.accounts.iter().map(|a| a.error_kind)),
            ),
        )
    }
}

impl Outcome for CutoverRun {
    fn exit_code(&self) -> i32 {
        exit_code(
            self.verdict.complete,
            self.mirrored
                .accounts
                .iter()
                .map(|a| a.error_kind)
                .chain(self.uploaded.accounts.iter().map(|a| a.error_kind)),
        )
    }
}
