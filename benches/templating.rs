//! Criterion benchmarks of templating on one core: scene graphs of the built-in sample to question-answer pairs
//! (`qa/generate`: references, sampling, margins, phrasing; `qa/generate_every_draw` without the stop for a frame
//! whose questions have run out), and the pairs to output rows (`qa/serialize_jsonl`,
//! `qa/arrow_batch`). Throughput is in pairs per second; the target is 500,000 QA/s for generation so that text
//! never limits the GPU path.
//!
//! `cargo bench --bench templating`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spatialsynth::io::{load_frame, read_manifest};
use spatialsynth::pipeline::{process_frame, SceneConfig};
use spatialsynth::qa::{generate_frame_counting_draws, generate_frame_into, QaOptions, QaRecord, TemplateBank};
use spatialsynth::scene::SceneGraph;

/// The scene graphs of the annotated sample frames (the geometry runs once, outside the timing).
fn sample_graphs() -> Vec<SceneGraph> {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample/frames.json");
    read_manifest(&manifest)
        .expect("data/sample/frames.json")
        .into_iter()
        .map(|s| process_frame(&load_frame(&s.expect("frame spec")).expect("sample frame"), &SceneConfig::default()))
        .collect::<Result<_, _>>()
        .expect("sample scene graphs")
}

fn generate_all(graphs: &[SceneGraph], bank: &TemplateBank, options: &QaOptions, out: &mut Vec<QaRecord>) {
    out.clear();
    for g in graphs {
        generate_frame_into(g, bank, options, out);
    }
}

fn templating(c: &mut Criterion) {
    let graphs = sample_graphs();
    let bank = TemplateBank::builtin().expect("built-in templates");
    let options = QaOptions { qa_per_image: 32, ..QaOptions::default() };
    let mut out = Vec::new();
    // Where each frame stops drawing, against the draws it would spend without the stop (BENCHMARKS quotes these).
    for g in &graphs {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let made = generate_frame_counting_draws(g, bank, &options, &mut a, true);
        let all = generate_frame_counting_draws(g, bank, &options, &mut b, false);
        eprintln!("{}: {} questions, {made} draws with the stop, {all} without", g.frame, a.len());
    }
    generate_all(&graphs, bank, &options, &mut out);
    let n = out.len() as u64;
    let mut g = c.benchmark_group("qa");
    g.throughput(Throughput::Elements(n));
    g.bench_function(format!("generate/cpu1/{n}_pairs"), |b| {
        b.iter(|| {
            generate_all(black_box(&graphs), bank, &options, &mut out);
            black_box(out.len())
        })
    });
    // The same spending every draw of a frame whose questions have run out (the same pairs): what the stop saves.
    g.bench_function(format!("generate_every_draw/cpu1/{n}_pairs"), |b| {
        b.iter(|| {
            out.clear();
            for gr in black_box(&graphs) {
                generate_frame_counting_draws(gr, bank, &options, &mut out, false);
            }
            black_box(out.len())
        })
    });
    // The same with every object taken as whole (no cut-off, occlusion or floor-standing rule): what the rules for
    // partly hidden objects cost, against the line above in the same run.
    let whole = QaOptions {
        margins: spatialsynth::qa::Margins {
            cut_off_px: None,
            occluded_fraction: None,
            floor_standing: Vec::new(),
            ..Default::default()
        },
        ..options.clone()
    };
    generate_all(&graphs, bank, &whole, &mut out);
    let n_whole = out.len();
    g.throughput(Throughput::Elements(n_whole as u64));
    g.bench_function(format!("generate_whole/cpu1/{n_whole}_pairs"), |b| {
        b.iter(|| {
            generate_all(black_box(&graphs), bank, &whole, &mut out);
            black_box(out.len())
        })
    });
    generate_all(&graphs, bank, &options, &mut out);
    g.throughput(Throughput::Elements(n));
    g.bench_function(format!("serialize_jsonl/cpu1/{n}_pairs"), |b| {
        let mut buf = Vec::with_capacity(1 << 20);
        b.iter(|| {
            buf.clear();
            for r in &out {
                serde_json::to_writer(&mut buf, r).expect("serialise");
                buf.push(b'\n');
            }
            black_box(buf.len())
        })
    });
    g.bench_function(format!("arrow_batch/cpu1/{n}_pairs"), |b| {
        b.iter(|| black_box(spatialsynth::dataset::parquet::record_batch(&out).expect("batch").num_rows()))
    });
    g.finish();
}

criterion_group!(benches, templating);
criterion_main!(benches);
