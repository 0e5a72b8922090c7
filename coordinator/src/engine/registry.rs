//! Dense ids for subjects and records, and interned force and source codes:
//! what lets the matcher and the outbox work on `u32`s while messages and
//! the store name things by code and opaque reference.

use std::collections::HashMap;

use crate::store::Ref;

/// Interned force and source codes.
#[derive(Default)]
struct Names {
    codes: Vec<String>,
    ix: HashMap<String, u16>,
}

impl Names {
    fn intern(&mut self, code: &str) -> u16 {
        if let Some(i) = self.ix.get(code) {
            return *i;
        }
        let i = self.codes.len() as u16;
        self.codes.push(code.to_string());
        self.ix.insert(code.to_string(), i);
        i
    }

    fn get(&self, code: &str) -> Option<u16> {
        self.ix.get(code).copied()
    }

    fn name(&self, i: u16) -> &str {
        &self.codes[i as usize]
    }
}

/// Dense ids for (name, reference) pairs, reused after removal.
#[derive(Default)]
struct Ids {
    map: HashMap<(u16, Ref), u32>,
    info: Vec<Option<(u16, Ref)>>,
    free: Vec<u32>,
    count: HashMap<u16, u64>,
}

impl Ids {
    fn get(&self, name: u16, r: &Ref) -> Option<u32> {
        self.map.get(&(name, *r)).copied()
    }

    fn insert(&mut self, name: u16, r: Ref) -> u32 {
        let id = match self.free.pop() {
            Some(id) => {
                self.info[id as usize] = Some((name, r));
                id
            }
            None => {
                self.info.push(Some((name, r)));
                (self.info.len() - 1) as u32
            }
        };
        self.map.insert((name, r), id);
        *self.count.entry(name).or_default() += 1;
        id
    }

    fn remove(&mut self, name: u16, r: &Ref) -> Option<u32> {
        let id = self.map.remove(&(name, *r))?;
        self.info[id as usize] = None;
        self.free.push(id);
        if let Some(c) = self.count.get_mut(&name) {
            *c -= 1;
        }
        Some(id)
    }

    fn info(&self, id: u32) -> Option<(u16, Ref)> {
        self.info.get(id as usize).copied().flatten()
    }

    fn count(&self, name: u16) -> u64 {
        self.count.get(&name).copied().unwrap_or(0)
    }
}

/// One (subject, record) pair, named as messages and the store name it.
pub(super) struct Pair<'a> {
    pub sid: u32,
    pub rid: u32,
    pub force: &'a str,
    pub pseudonym: Ref,
    pub source: &'a str,
    pub record_ref: Ref,
}

/// Subjects (per force) and records (per source) by dense id.
#[derive(Default)]
pub(super) struct Registry {
    names: Names,
    subjects: Ids,
    records: Ids,
}

impl Registry {
    /// The subject id of a force's pseudonym.
    pub fn subject(&self, force: &str, pseudonym: &Ref) -> Option<u32> {
        self.subjects.get(self.names.get(force)?, pseudonym)
    }

    /// The record id of a source's reference.
    pub fn record(&self, source: &str, record_ref: &Ref) -> Option<u32> {
        self.records.get(self.names.get(source)?, record_ref)
    }

    /// Adds a subject (not already there) and returns its id.
    pub fn add_subject(&mut self, force: &str, pseudonym: Ref) -> u32 {
        let f = self.names.intern(force);
        self.subjects.insert(f, pseudonym)
    }

    /// Adds a record (not already there) and returns its id.
    pub fn add_record(&mut self, source: &str, record_ref: Ref) -> u32 {
        let s = self.names.intern(source);
        self.records.insert(s, record_ref)
    }

    /// Forgets a subject.
    pub fn remove_subject(&mut self, force: &str, pseudonym: &Ref) {
        if let Some(f) = self.names.get(force) {
            self.subjects.remove(f, pseudonym);
        }
    }

    /// Forgets a record.
    pub fn remove_record(&mut self, source: &str, record_ref: &Ref) {
        if let Some(s) = self.names.get(source) {
            self.records.remove(s, record_ref);
        }
    }

    /// Subjects a force has enrolled.
    pub fn enrolled(&self, force: &str) -> u64 {
        self.names.get(force).map_or(0, |f| self.subjects.count(f))
    }

    /// Records a source holds.
    pub fn held(&self, source: &str) -> u64 {
        self.names.get(source).map_or(0, |s| self.records.count(s))
    }

    /// A record's source, as a small number (the same for every record of
    /// one source).
    pub fn record_source(&self, rid: u32) -> Option<u16> {
        self.records.info(rid).map(|(s, _)| s)
    }

    /// How many sources hold records.
    pub fn sources(&self) -> u64 {
        self.records.count.values().filter(|n| **n > 0).count() as u64
    }

    /// A record's source and reference.
    pub fn record_info(&self, rid: u32) -> Option<(&str, Ref)> {
        self.records.info(rid).map(|(s, r)| (self.names.name(s), r))
    }

    /// A subject's force and pseudonym.
    pub fn subject_info(&self, sid: u32) -> Option<(&str, Ref)> {
        self.subjects.info(sid).map(|(f, r)| (self.names.name(f), r))
    }

    /// Every subject id.
    pub fn subject_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.subjects.map.values().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Both sides of a pair, by name.
    pub fn pair(&self, sid: u32, rid: u32) -> Option<Pair<'_>> {
        let (f, pseudonym) = self.subjects.info(sid)?;
        let (s, record_ref) = self.records.info(rid)?;
        Some(Pair { sid, rid, force: self.names.name(f), pseudonym, source: self.names.name(s), record_ref })
    }
}
