#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| spatialsynth::io::fuzzing::qa(data));
