//! Replays the committed fuzz corpus through the fuzz bodies, so `cargo test` keeps every regression input.

mod common;

use spatialsynth::io::fuzzing;

#[test]
fn fuzz_corpus_replays_without_panics() {
    type Body = fn(&[u8]);
    let targets: [(&str, Body); 5] = [
        ("manifest", fuzzing::manifest),
        ("depth", fuzzing::depth),
        ("objects", fuzzing::objects),
        ("model", fuzzing::model),
        ("qa", fuzzing::qa),
    ];
    for (name, body) in targets {
        let dir = common::repo().join("fuzz/corpus").join(name);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            body(&std::fs::read(&path).unwrap());
            n += 1;
        }
        assert!(n > 0, "empty corpus {}", dir.display());
        // Plus every prefix of every seed: truncated inputs are the commonest corruption.
        for entry in std::fs::read_dir(&dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            for end in (0..bytes.len()).step_by((bytes.len() / 400).max(7)) {
                body(&bytes[..end]);
            }
        }
    }
}
