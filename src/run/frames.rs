//! The frames of a run's inputs, streamed in input order: manifests are read one at a time (JSON Lines a line at a
//! time), so that memory does not grow with the number of frames.

use std::collections::HashSet;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::FailureRecord;
use crate::io::manifest::find_manifests_except;
use crate::io::manifest::stream_manifest;
use crate::io::FrameSpec;

/// One item of a run's input: a frame to process, or a failure found while reading the manifests (an unreadable
/// manifest, a malformed line, a duplicate frame name).
#[derive(Clone, Debug)]
pub enum InputItem {
    Frame(FrameSpec),
    Failure(FailureRecord),
}

/// Streams the frames of every input (manifest file or folder), in order, with the failures found on the way.
///
/// Frame names (`dataset/id`) must be unique in a run: they name outputs and seed random draws. A repeated name
/// is a failure of the later frame. The check keeps a 128-bit digest per name seen (about 32 bytes per frame
/// with the set's overhead: 320 MB for 10 million frames), the only state that grows with the run.
pub struct FrameStream {
    /// The inputs still to read, last first.
    inputs: Vec<PathBuf>,
    manifests: std::vec::IntoIter<PathBuf>,
    current: Option<Box<dyn Iterator<Item = crate::error::Result<FrameSpec>> + Send>>,
    seen: HashSet<u128>,
    /// A folder not searched for manifests (the run's own output folder, when it lies inside an input folder).
    exclude: Option<PathBuf>,
}

impl FrameStream {
    pub fn new(inputs: &[PathBuf]) -> Self {
        FrameStream {
            inputs: inputs.iter().rev().cloned().collect(),
            manifests: Vec::new().into_iter(),
            current: None,
            seen: HashSet::new(),
            exclude: None,
        }
    }

    /// Does not look for manifests in `dir` (a run's output folder, whose `.jsonl` files are not manifests).
    pub fn excluding(mut self, dir: &std::path::Path) -> Self {
        self.exclude = std::fs::canonicalize(dir).ok();
        self
    }

    fn name_digest(key: &str) -> u128 {
        let d = Sha256::digest(key.as_bytes());
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        u128::from_le_bytes(b)
    }
}

impl Iterator for FrameStream {
    type Item = InputItem;

    fn next(&mut self) -> Option<InputItem> {
        loop {
            if let Some(frames) = self.current.as_mut() {
                match frames.next() {
                    Some(Ok(spec)) => {
                        if self.seen.insert(Self::name_digest(&spec.key)) {
                            return Some(InputItem::Frame(spec));
                        }
                        return Some(InputItem::Failure(FailureRecord {
                            frame: spec.key.clone(),
                            kind: "malformed_manifest".into(),
                            file: Some(spec.manifest.display().to_string()),
                            manifest: Some(spec.manifest.display().to_string()),
                            line: spec.line,
                            message: format!("duplicate frame {} (dataset/id must be unique in a run)", spec.key),
                        }));
                    }
                    Some(Err(e)) => return Some(InputItem::Failure(FailureRecord::new(&e, None))),
                    None => self.current = None,
                }
            }
            if let Some(m) = self.manifests.next() {
                match stream_manifest(&m) {
                    Ok(frames) => self.current = Some(frames),
                    Err(e) => return Some(InputItem::Failure(FailureRecord::new(&e, None))),
                }
                continue;
            }
            let input = self.inputs.pop()?;
            match find_manifests_except(&input, self.exclude.as_deref()) {
                Ok(m) if m.is_empty() => {
                    return Some(InputItem::Failure(FailureRecord {
                        frame: "-".into(),
                        kind: "malformed_manifest".into(),
                        file: Some(input.display().to_string()),
                        manifest: None,
                        line: None,
                        message: format!("{}: no frames.json or *.jsonl manifest found", input.display()),
                    }))
                }
                Ok(m) => self.manifests = m.into_iter(),
                Err(e) => return Some(InputItem::Failure(FailureRecord::new(&e, None))),
            }
        }
    }
}

/// Collects the frames of every input (manifest file or folder), in order. Per-frame and per-manifest parse
/// errors come back as failures; the other frames are still returned. (A run streams instead: see
/// [`FrameStream`].)
pub fn collect_frames(inputs: &[PathBuf]) -> (Vec<FrameSpec>, Vec<FailureRecord>) {
    let mut frames = Vec::new();
    let mut failures = Vec::new();
    for item in FrameStream::new(inputs) {
        match item {
            InputItem::Frame(f) => frames.push(f),
            InputItem::Failure(f) => failures.push(f),
        }
    }
    (frames, failures)
}
