//! The `wgpu` backend: WGSL kernels from `shaders/`, compiled when the backend opens.
//!
//! Device errors (a shader the driver refuses, an out-of-memory) are captured, not panicked on, and come back as
//! `Err` with wgpu's message. Batches are chunked to the adapter's limits (storage-binding size, workgroups per
//! dimension).

use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::geometry::ransac::{
    fit_from_scores_on, score_sample_indices, GroundDevice, PlaneFit, RansacParams, Support,
};
use crate::geometry::relations::RelationRecord;
use crate::geometry::stats::{NoiseModel, ObjectSummary, StatsInput};
use crate::geometry::unproject::{DepthImage, GroupedPoints, ObjectRegion, PointCloud};
use crate::geometry::{Intrinsics, Plane, Point3};

/// The WGSL modules, embedded, each composed of its kernel file and the shared files it uses (WGSL has no
/// includes: `scan.wgsl`, `tiled_scan.wgsl`, `reduce.wgsl` and `rng.wgsl` are prepended); `tests/parity.rs` validates each with naga.
pub const SHADERS: [(&str, &str); 7] = [
    ("relations.wgsl", include_str!("../../shaders/relations.wgsl")),
    (
        "unproject.wgsl",
        concat!(
            include_str!("../../shaders/scan.wgsl"),
            include_str!("../../shaders/tiled_scan.wgsl"),
            include_str!("../../shaders/unproject.wgsl")
        ),
    ),
    ("ransac.wgsl", concat!(include_str!("../../shaders/rng.wgsl"), include_str!("../../shaders/ransac.wgsl"))),
    ("group.wgsl", concat!(include_str!("../../shaders/scan.wgsl"), include_str!("../../shaders/group.wgsl"))),
    ("dbscan.wgsl", include_str!("../../shaders/dbscan.wgsl")),
    (
        "stats.wgsl",
        concat!(
            include_str!("../../shaders/scan.wgsl"),
            include_str!("../../shaders/reduce.wgsl"),
            include_str!("../../shaders/stats.wgsl")
        ),
    ),
    (
        "gaps.wgsl",
        concat!(
            include_str!("../../shaders/scan.wgsl"),
            include_str!("../../shaders/reduce.wgsl"),
            include_str!("../../shaders/tiled_scan.wgsl"),
            include_str!("../../shaders/gaps.wgsl")
        ),
    ),
];

const WORKGROUP: u32 = 256;
/// Counts per tile of the tiled scans (`SCAN_TILE` in shaders/tiled_scan.wgsl: 256 invocations x 16).
const SCAN_TILE: u32 = 16 * WORKGROUP;
/// The most counts the one-workgroup scan (`scan_one_group`) takes; more take the tiled scan.
const SCAN_ONE_GROUP_MAX: u64 = 8192;

/// One dispatch: its pipeline, the buffers it binds (indices into the call's list) and its workgroups `(x, y)`.
type Step<'a> = (&'a wgpu::ComputePipeline, &'a [u32], (u32, u32));

/// The prefix sums of one shader that has shaders/tiled_scan.wgsl prepended (K1's block counts, the gaps' bucket
/// counts): its four scan pipelines, each with the buffers it binds, so that both callers build the same steps.
struct ScanPipelines {
    one_group: wgpu::ComputePipeline,
    tile_sums: wgpu::ComputePipeline,
    tile_starts: wgpu::ComputePipeline,
    tiles_apply: wgpu::ComputePipeline,
    /// What `one_group` and `tile_starts` bind (one function serves both, so it names every buffer), what
    /// `tile_sums` binds, what `tiles_apply` binds.
    every: Vec<u32>,
    sums: Vec<u32>,
    apply: Vec<u32>,
}

impl ScanPipelines {
    /// The pipelines of `module`, whose bindings of the params (scan_n), the counts, the offsets and the two tile
    /// buffers are `[params, counts, offsets, tile_sums, tile_starts]`.
    fn new(
        pipeline: impl Fn(&str) -> wgpu::ComputePipeline,
        [params, counts, offsets, tile_sums, tile_starts]: [u32; 5],
    ) -> Self {
        let sorted = |mut v: Vec<u32>| {
            v.sort_unstable();
            v
        };
        ScanPipelines {
            one_group: pipeline("scan_one_group"),
            tile_sums: pipeline("scan_tile_sums"),
            tile_starts: pipeline("scan_tile_starts"),
            tiles_apply: pipeline("scan_tiles_apply"),
            every: sorted(vec![params, counts, offsets, tile_sums, tile_starts]),
            sums: sorted(vec![params, counts, tile_sums]),
            apply: sorted(vec![params, counts, offsets, tile_starts]),
        }
    }

    /// The steps that scan `n` counts: one workgroup up to [`SCAN_ONE_GROUP_MAX`], else the tiled scan (one
    /// workgroup alone keeps too few loads in flight for a large table) over `tile_groups` workgroups, one a tile.
    fn steps(&self, n: u64, tile_groups: (u32, u32)) -> Vec<Step<'_>> {
        match n > SCAN_ONE_GROUP_MAX {
            false => vec![(&self.one_group, &self.every, (1, 1))],
            true => vec![
                (&self.tile_sums, &self.sums, tile_groups),
                (&self.tile_starts, &self.every, (1, 1)),
                (&self.tiles_apply, &self.apply, tile_groups),
            ],
        }
    }
}

pub use super::layout::*;

/// The clouds of a batch of frames left on the device by K1, frame after frame.
struct DeviceCloud {
    points: wgpu::Buffer,
    pixels: wgpu::Buffer,
    /// Where each frame's points start, then the total.
    offsets: Vec<u64>,
}

impl DeviceCloud {
    fn total(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0)
    }
}

/// A frame's K2 inputs on the device (bindings in `shaders/ransac.wgsl`'s order).
struct GroundSession<'a> {
    backend: &'a WgpuBackend,
    buffers: [wgpu::Buffer; 12],
    sample_index: Vec<u32>,
    use_normals: bool,
    params: &'a RansacParams,
    gpu: RansacParamsGpu,
}

impl GroundSession<'_> {
    fn run(&self, pipeline: &wgpu::ComputePipeline, used: &[u32], groups: (u32, u32)) {
        let all: Vec<&wgpu::Buffer> = self.buffers.iter().collect();
        self.backend.dispatch_all(&all, &[(pipeline, used, groups)]);
    }

    /// Draws every hypothesis on the device, builds its plane on the host and scores them all on the device:
    /// `(scores, planes)`.
    fn score(&self) -> Result<(Vec<u32>, Vec<Option<Plane>>), String> {
        let b = self.backend;
        let h = u64::from(self.gpu.hypotheses);
        if h == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        if self.gpu.points < 3 {
            return Ok((vec![0; h as usize], vec![None; h as usize]));
        }
        self.run(&b.ransac_draw, &[4, 5, 7, 8], b.grid(h)?);
        let triples: Vec<u32> = bytemuck::pod_collect_to_vec(&b.read_back(&self.buffers[7], h * 12)?);
        let corners: Vec<f32> = bytemuck::pod_collect_to_vec(&b.read_back(&self.buffers[8], h * 36)?);
        let (planes, hyps) = super::pack::hypotheses_from_draws(&triples, &corners, self.params);
        b.queue.write_buffer(&self.buffers[0], 0, bytemuck::cast_slice(&hyps));
        // One workgroup per hypothesis.
        self.run(&b.ransac_score, &[0, 1, 2, 3, 4], b.grid(h * u64::from(WORKGROUP))?);
        let scores = bytemuck::pod_collect_to_vec(&b.read_back(&self.buffers[3], h * 4)?);
        Ok((scores, planes))
    }

    /// The whole fit: scores, then the winner, refinement and acceptance (`points`: the cloud on the host).
    fn fit(&self, points: &[Point3]) -> Result<Option<PlaneFit>, String> {
        let (scores, planes) = self.score()?;
        let sample_points: Vec<Point3> = self.sample_index.iter().map(|&i| points[i as usize]).collect();
        fit_from_scores_on(
            self,
            |h| planes.get(h as usize).copied().flatten(),
            &sample_points,
            self.use_normals,
            points.len(),
            self.params,
            &scores,
        )
    }

    fn set_test(&self, test: &Support) {
        let t = super::pack::support_test(test, self.use_normals);
        self.backend.queue.write_buffer(&self.buffers[11], 0, bytemuck::bytes_of(&t));
    }
}

impl GroundDevice for GroundSession<'_> {
    fn sample_support(&self, test: &Support) -> Result<Vec<u32>, String> {
        let b = self.backend;
        let s = u64::from(self.gpu.samples);
        if s == 0 {
            return Ok(Vec::new());
        }
        self.set_test(test);
        self.run(&b.ransac_supports, &[1, 2, 4, 9, 11], b.grid(s)?);
        let mask: Vec<u32> = bytemuck::pod_collect_to_vec(&b.read_back(&self.buffers[9], s * 4)?);
        Ok((0..mask.len() as u32).filter(|&i| mask[i as usize] == 1).collect())
    }

    fn count_inliers(&self, test: &Support) -> Result<u32, String> {
        let b = self.backend;
        if self.gpu.points == 0 {
            return Ok(0);
        }
        self.set_test(&Support { min_cos: None, ..*test });
        b.queue.write_buffer(&self.buffers[10], 0, bytemuck::bytes_of(&0u32));
        self.run(&b.ransac_count, &[4, 5, 10, 11], b.grid(u64::from(self.gpu.points))?);
        let count: Vec<u32> = bytemuck::pod_collect_to_vec(&b.read_back(&self.buffers[10], 4)?);
        count.first().copied().ok_or_else(|| "no inlier count came back".to_string())
    }
}

/// An open device with the kernels compiled.
pub struct WgpuBackend {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    errors: Arc<Mutex<Vec<String>>>,
    relations: wgpu::ComputePipeline,
    stats: wgpu::ComputePipeline,
    ransac_gather: wgpu::ComputePipeline,
    ransac_draw: wgpu::ComputePipeline,
    ransac_score: wgpu::ComputePipeline,
    ransac_supports: wgpu::ComputePipeline,
    ransac_count: wgpu::ComputePipeline,
    count_neighbours: wgpu::ComputePipeline,
    unite: wgpu::ComputePipeline,
    flatten: wgpu::ComputePipeline,
    assign_borders: wgpu::ComputePipeline,
    count_members: wgpu::ComputePipeline,
    scan_members: wgpu::ComputePipeline,
    write_members: wgpu::ComputePipeline,
    count_valid: wgpu::ComputePipeline,
    k1_scan: ScanPipelines,
    write_points: wgpu::ComputePipeline,
    order_count: wgpu::ComputePipeline,
    gap_scan: ScanPipelines,
    order_scatter: wgpu::ComputePipeline,
    chunk_boxes: wgpu::ComputePipeline,
    super_boxes: wgpu::ComputePipeline,
    pair_bounds: wgpu::ComputePipeline,
    refine_bounds: wgpu::ComputePipeline,
    search_pairs: wgpu::ComputePipeline,
}

impl WgpuBackend {
    /// Opens the first adapter wgpu offers (a real GPU first, else a software one such as lavapipe) and compiles
    /// the kernels. `Err` says why when there is no adapter or a kernel does not compile.
    pub fn new() -> Result<WgpuBackend, String> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            ..Default::default()
        }))
        .map_err(|e| {
            format!(
                "no GPU adapter ({e}); install a Vulkan driver (without a GPU: Mesa's lavapipe, apt-get install \
                 mesa-vulkan-drivers libvulkan1)"
            )
        })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("spatialsynth"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| format!("cannot open {}: {e}", info.name))?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let module = |name: &str, source: &str| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            })
        };
        let pipeline = |m: &wgpu::ShaderModule, entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: m,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let relations_module = module(SHADERS[0].0, SHADERS[0].1);
        let unproject_module = module(SHADERS[1].0, SHADERS[1].1);
        let ransac_module = module(SHADERS[2].0, SHADERS[2].1);
        let group_module = module(SHADERS[3].0, SHADERS[3].1);
        let dbscan_module = module(SHADERS[4].0, SHADERS[4].1);
        let stats_module = module(SHADERS[5].0, SHADERS[5].1);
        let gaps_module = module(SHADERS[6].0, SHADERS[6].1);
        let backend = WgpuBackend {
            count_neighbours: pipeline(&dbscan_module, "count_neighbours"),
            unite: pipeline(&dbscan_module, "unite"),
            flatten: pipeline(&dbscan_module, "flatten"),
            assign_borders: pipeline(&dbscan_module, "assign_borders"),
            count_members: pipeline(&group_module, "count_members"),
            scan_members: pipeline(&group_module, "scan_members"),
            write_members: pipeline(&group_module, "write_members"),
            relations: pipeline(&relations_module, "main"),
            stats: pipeline(&stats_module, "summarize"),
            ransac_gather: pipeline(&ransac_module, "gather_samples"),
            ransac_draw: pipeline(&ransac_module, "draw"),
            ransac_score: pipeline(&ransac_module, "score"),
            ransac_supports: pipeline(&ransac_module, "sample_supports"),
            ransac_count: pipeline(&ransac_module, "count_inliers"),
            count_valid: pipeline(&unproject_module, "count_valid"),
            // unproject.wgsl: params 7, block counts 3, block offsets 4, tile sums 10, tile starts 11.
            k1_scan: ScanPipelines::new(|entry| pipeline(&unproject_module, entry), [7, 3, 4, 10, 11]),
            write_points: pipeline(&unproject_module, "write_points"),
            order_count: pipeline(&gaps_module, "order_count"),
            // gaps.wgsl: params 5, bucket counts 9, bucket starts 10, tile sums 12, tile starts 13.
            gap_scan: ScanPipelines::new(|entry| pipeline(&gaps_module, entry), [5, 9, 10, 12, 13]),
            order_scatter: pipeline(&gaps_module, "order_scatter"),
            chunk_boxes: pipeline(&gaps_module, "chunk_boxes"),
            super_boxes: pipeline(&gaps_module, "super_boxes"),
            pair_bounds: pipeline(&gaps_module, "pair_bounds"),
            refine_bounds: pipeline(&gaps_module, "refine_bounds"),
            search_pairs: pipeline(&gaps_module, "search_pairs"),
            device,
            queue,
            info,
            limits,
            errors,
        };
        backend.check("compiling the kernels")?;
        Ok(backend)
    }

    /// The adapter, e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)`.
    pub fn adapter_description(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
    }

    /// Errors the device reported since the last check.
    fn check(&self, what: &str) -> Result<(), String> {
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        let mut errors = self.errors.lock().map_err(|_| format!("{what}: error log poisoned"))?;
        match errors.is_empty() {
            true => Ok(()),
            false => Err(format!("{what}: {}", std::mem::take(&mut *errors).join("; "))),
        }
    }

    fn storage(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        // Zero-sized bindings are not allowed: pad empty inputs to one word.
        let contents: &[u8] = if bytes.is_empty() { &[0u8; 4] } else { bytes };
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        })
    }

    fn output(&self, label: &str, size: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// Copies `size` bytes of `source` back to the host (waits for the device).
    fn read_back(&self, source: &wgpu::Buffer, size: u64) -> Result<Vec<u8>, String> {
        if size == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read back"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(source, 0, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.check("running the kernels")?;
        rx.recv().map_err(|e| e.to_string())?.map_err(|e| format!("cannot read the results back: {e}"))?;
        let bytes = staging.slice(..).get_mapped_range().map_err(|e| e.to_string())?.to_vec();
        staging.unmap();
        Ok(bytes)
    }

    /// Submits one dispatch of `pipeline` over `(x, y)` workgroups with `buffers` at bindings 0, 1, 2, ...
    fn dispatch(&self, pipeline: &wgpu::ComputePipeline, buffers: &[&wgpu::Buffer], groups: (u32, u32)) {
        let all: Vec<u32> = (0..buffers.len() as u32).collect();
        self.dispatch_all(buffers, &[(pipeline, &all, groups)]);
    }

    /// Runs `steps` in order in one compute pass and one submission (wgpu orders each dispatch's storage writes
    /// before the next one's reads): each step an entry point, the bindings it uses (indices into `buffers`; each
    /// entry point's derived layout holds only the bindings it uses) and its workgroup counts.
    fn dispatch_all(&self, buffers: &[&wgpu::Buffer], steps: &[Step<'_>]) {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for &(pipeline, used, (x, y)) in steps {
                let bind = self.bind_subset(pipeline, buffers, used);
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &bind, &[]);
                pass.dispatch_workgroups(x, y, 1);
            }
        }
        self.queue.submit([encoder.finish()]);
    }

    /// Workgroup counts `(x, y)` covering `invocations`, within the per-dimension limit.
    fn grid(&self, invocations: u64) -> Result<(u32, u32), String> {
        let groups = invocations.div_ceil(u64::from(WORKGROUP)).max(1);
        let max = u64::from(self.limits.max_compute_workgroups_per_dimension);
        let x = groups.min(max);
        let y = groups.div_ceil(x);
        if y > max {
            return Err(format!("{invocations} invocations exceed the adapter's dispatch limits"));
        }
        Ok((x as u32, y as u32))
    }

    /// K5 over a batch of frames (see [`super::Backend::relate_batch`]), chunked so that each dispatch's output
    /// fits one storage binding.
    pub fn relate_batch(&self, frames: &[&[ObjectSummary]]) -> Result<Vec<Vec<RelationRecord>>, String> {
        let record = std::mem::size_of::<RelationRecord>() as u64;
        let max_pairs = (self.limits.max_storage_buffer_binding_size / record).max(1);
        let mut out = Vec::with_capacity(frames.len());
        for (start, end, pairs) in super::pack::relation_chunks(frames, max_pairs)? {
            out.extend(self.relate_chunk(&frames[start..end], pairs)?);
        }
        Ok(out)
    }

    fn relate_chunk(&self, frames: &[&[ObjectSummary]], pairs: u64) -> Result<Vec<Vec<RelationRecord>>, String> {
        let (objects, ranges) = super::pack::pack_relations(frames);
        let record = std::mem::size_of::<RelationRecord>() as u64;
        if pairs > 0 {
            let objects_buf = self.storage("objects", bytemuck::cast_slice(&objects));
            let ranges_buf = self.storage("frames", bytemuck::cast_slice(&ranges));
            let out_buf = self.output("relations", pairs * record);
            let params = self
                .uniform("params", &RelationParams { frames: ranges.len() as u32, pairs: pairs as u32, _pad: [0; 2] });
            self.dispatch(&self.relations, &[&objects_buf, &ranges_buf, &out_buf, &params], self.grid(pairs)?);
            let bytes = self.read_back(&out_buf, pairs * record)?;
            let records: Vec<RelationRecord> = bytemuck::pod_collect_to_vec(&bytes);
            return super::pack::split_relations(&ranges, &records);
        }
        Ok(frames.iter().map(|_| Vec::new()).collect())
    }

    /// The exact closest-surface gaps of every pair of objects of every frame of a batch (see
    /// [`super::Backend::closest_gaps_batch`]): one workgroup per tile of 2,048 super-chunk pairs, chunked so that each
    /// dispatch's buffers fit one storage binding.
    pub fn closest_gaps_batch(&self, frames: &[&[&[Point3]]]) -> Result<Vec<Vec<f32>>, String> {
        let binding = self.limits.max_storage_buffer_binding_size;
        // One workgroup per tile, over a two-dimensional grid.
        let max_groups = u64::from(self.limits.max_compute_workgroups_per_dimension).pow(2).min(u64::from(u32::MAX));
        let mut out = super::pack::gap_matrices(frames);
        // (The starts hold one word more than the buckets.)
        for chunk in super::pack::gap_chunks(frames, binding / 12, binding / 8, max_groups, binding / 4 - 1)? {
            let pack = super::pack::GapPack::new(frames, &chunk)?;
            let (chunks, pairs, tiles) = (u64::from(pack.chunks), pack.pairs.len() as u64, pack.tiles());
            let scan_tiles = pack.buckets.div_ceil(SCAN_TILE);
            let params = GapParams {
                objects: pack.objects.len() as u32,
                chunks: pack.chunks,
                pairs: pairs as u32,
                tiles,
                points: pack.point_count,
                buckets: pack.buckets,
                supers: pack.supers,
                _pad: 0,
            };
            // wgpu zeroes new buffers: the counts start at 0.
            let buffers = [
                self.output("ordered points", u64::from(pack.point_count) * 12),
                self.storage("objects", bytemuck::cast_slice(&pack.objects)),
                self.output("boxes", chunks * 24),
                self.storage("pairs", bytemuck::cast_slice(&pack.pairs)),
                self.storage("best2", bytemuck::cast_slice(&vec![f32::INFINITY.to_bits(); pairs as usize])),
                self.uniform("params", &params),
                self.storage("tile starts", bytemuck::cast_slice(&pack.tile_start)),
                self.storage("points", bytemuck::cast_slice(&pack.points)),
                self.storage("orders", bytemuck::cast_slice(&pack.orders)),
                self.output("bucket counts", u64::from(pack.buckets) * 4),
                self.output("bucket starts", (u64::from(pack.buckets) + 1) * 4),
                self.output("super boxes", u64::from(pack.supers) * 24),
                self.output("scan tile sums", u64::from(scan_tiles) * 4),
                self.output("scan tile starts", (u64::from(scan_tiles) + 1) * 4),
            ];
            let all: Vec<&wgpu::Buffer> = buffers.iter().collect();
            let points = self.grid(u64::from(pack.point_count))?;
            // One workgroup per tile.
            let tile_groups = self.grid(u64::from(tiles) * u64::from(WORKGROUP))?;
            // The buckets' starts.
            let scan_groups = self.grid(u64::from(scan_tiles) * u64::from(WORKGROUP))?;
            let mut steps: Vec<Step> = vec![(&self.order_count, &[1, 5, 7, 8, 9], points)];
            steps.extend(self.gap_scan.steps(u64::from(pack.buckets), scan_groups));
            steps.extend([
                (&self.order_scatter, &[0, 1, 5, 7, 8, 9, 10][..], points),
                (&self.chunk_boxes, &[0, 1, 2, 5][..], self.grid(chunks)?),
                (&self.super_boxes, &[0, 1, 5, 11][..], self.grid(u64::from(pack.supers))?),
                (&self.pair_bounds, &[0, 1, 3, 4, 5, 6][..], tile_groups),
                (&self.refine_bounds, &[0, 1, 3, 4, 5, 6, 11][..], tile_groups),
                (&self.search_pairs, &[0, 1, 2, 3, 4, 5, 6, 11][..], tile_groups),
            ]);
            self.dispatch_all(&all, &steps);
            let bits: Vec<u32> = bytemuck::pod_collect_to_vec(&self.read_back(&buffers[4], pairs * 4)?);
            let best2: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
            pack.fill(&best2, &mut out)?;
        }
        Ok(out)
    }

    /// K1 for the whole frame: every valid depth pixel in row-major order (see
    /// [`crate::geometry::unproject::unproject_depth`]). 16-bit depth is uploaded as 16-bit.
    pub fn unproject(&self, depth: &DepthImage, k: &Intrinsics) -> Result<PointCloud, String> {
        Ok(self.unproject_batch(&[(depth, k)])?.pop().unwrap_or_default())
    }

    /// K1 for a batch of frames: as many frames per dispatch as one storage binding of points holds.
    pub fn unproject_batch(&self, frames: &[(&DepthImage, &Intrinsics)]) -> Result<Vec<PointCloud>, String> {
        let max_pixels = self.limits.max_storage_buffer_binding_size / 12;
        let mut out = Vec::with_capacity(frames.len());
        for (start, end) in super::pack::frame_chunks(frames, max_pixels) {
            let chunk = &frames[start..end];
            match self.unproject_device(chunk)? {
                None => out.extend(chunk.iter().map(|_| PointCloud::default())),
                Some(cloud) => out.extend(self.read_clouds(&cloud)?),
            }
        }
        Ok(out)
    }

    /// Each frame's cloud of a device batch, read back.
    fn read_clouds(&self, cloud: &DeviceCloud) -> Result<Vec<PointCloud>, String> {
        let total = cloud.total();
        let floats: Vec<f32> = bytemuck::pod_collect_to_vec(&self.read_back(&cloud.points, total * 12)?);
        let pixel_ids: Vec<u32> = bytemuck::pod_collect_to_vec(&self.read_back(&cloud.pixels, total * 4)?);
        Ok(super::pack::split_clouds(&cloud.offsets, &floats, &pixel_ids))
    }

    /// K1 on the device for a batch of frames: the clouds stay there (`None` when no frame has a pixel); only
    /// each frame's point count is read back.
    fn unproject_device(&self, frames: &[(&DepthImage, &Intrinsics)]) -> Result<Option<DeviceCloud>, String> {
        let batch = super::pack::DepthBatch::pack(frames, WORKGROUP)?;
        let pixels_total = batch.pixels;
        if pixels_total * 12 > self.limits.max_storage_buffer_binding_size {
            return Err(format!("{pixels_total} pixels exceed one storage binding of points"));
        }
        let (words, ray_x, ray_y, infos, block_frame) =
            (&batch.words, &batch.ray_x, &batch.ray_y, &batch.frames, &batch.tile_frame);
        let blocks = block_frame.len() as u64;
        if blocks == 0 {
            return Ok(None);
        }
        let params = UnprojectParams { blocks: blocks as u32, frames: frames.len() as u32, _pad: [0; 2] };
        let depth_buf = self.storage("depth", bytemuck::cast_slice(words));
        let ray_x_buf = self.storage("ray_x", bytemuck::cast_slice(ray_x));
        let ray_y_buf = self.storage("ray_y", bytemuck::cast_slice(ray_y));
        let counts = self.output("block counts", blocks * 4);
        let offsets = self.output("block offsets", (blocks + 1) * 4);
        let points = self.output("points", pixels_total * 12);
        let pixel_of_point = self.output("pixels", pixels_total * 4);
        let params_buf = self.uniform("params", &params);
        let frames_buf = self.storage("frames", bytemuck::cast_slice(infos));
        let block_frame_buf = self.storage("block frames", bytemuck::cast_slice(block_frame));
        let scan_tiles = blocks.div_ceil(u64::from(SCAN_TILE));
        let tile_sums = self.output("scan tile sums", scan_tiles * 4);
        let tile_starts = self.output("scan tile starts", (scan_tiles + 1) * 4);
        let buffers = [
            &depth_buf,
            &ray_x_buf,
            &ray_y_buf,
            &counts,
            &offsets,
            &points,
            &pixel_of_point,
            &params_buf,
            &frames_buf,
            &block_frame_buf,
            &tile_sums,
            &tile_starts,
        ];
        let grid = self.grid(blocks * u64::from(WORKGROUP))?;
        // The blocks' offsets.
        let scan_groups = self.grid(scan_tiles * u64::from(WORKGROUP))?;
        let mut steps: Vec<Step> = vec![(&self.count_valid, &[0, 3, 7, 8, 9], grid)];
        steps.extend(self.k1_scan.steps(blocks, scan_groups));
        steps.push((&self.write_points, &[0, 1, 2, 4, 5, 6, 7, 8, 9], grid));
        self.dispatch_all(&buffers, &steps);
        let all: Vec<u32> = bytemuck::pod_collect_to_vec(&self.read_back(&offsets, (blocks + 1) * 4)?);
        let frame_offsets = batch.frame_offsets(&all)?;
        Ok(Some(DeviceCloud { points, pixels: pixel_of_point, offsets: frame_offsets }))
    }

    /// K1 and K2 of one frame with its cloud resident on the device: unprojected once, read back once (the host
    /// needs it for the normals and the canonical frame), grouped per object and searched for the ground from the
    /// same device buffer. `normals` makes the scoring subsample's normals from the cloud (see
    /// [`crate::pipeline::ground_sample_normals`]).
    #[allow(clippy::too_many_arguments)]
    pub fn frame_geometry(
        &self,
        depth: &DepthImage,
        k: &Intrinsics,
        instance_labels: Option<&[u32]>,
        regions: &[ObjectRegion],
        frame_key: u32,
        params: &RansacParams,
        normals: &dyn Fn(&PointCloud) -> Vec<Point3>,
    ) -> Result<(PointCloud, GroupedPoints, Option<PlaneFit>), String> {
        let Some(device) = self.unproject_device(&[(depth, k)])? else {
            let cloud = PointCloud::default();
            let grouped = GroupedPoints { offsets: vec![0; regions.len() + 1], ..GroupedPoints::default() };
            let fit = self.fit_ground_plane(&[], None, frame_key, params)?;
            return Ok((cloud, grouped, fit));
        };
        let cloud = self.read_clouds(&device)?.pop().unwrap_or_default();
        let grouped = self.group_on_device(&device, depth, instance_labels, regions)?;
        let sample_normals = normals(&cloud);
        let session = self.ground_session_on(
            Some(&device.points),
            &cloud.points_in_camera,
            Some(&sample_normals),
            frame_key,
            params,
        )?;
        let fit = session.fit(&cloud.points_in_camera)?;
        Ok((cloud, grouped, fit))
    }

    /// K1 per object (see [`crate::geometry::unproject::unproject_objects`]): the whole-frame cloud is computed
    /// and grouped on the device; only the grouped points come back.
    pub fn unproject_objects(
        &self,
        depth: &DepthImage,
        k: &Intrinsics,
        instance_labels: Option<&[u32]>,
        regions: &[ObjectRegion],
    ) -> Result<GroupedPoints, String> {
        let empty = || GroupedPoints { offsets: vec![0; regions.len() + 1], ..GroupedPoints::default() };
        if regions.is_empty() {
            return Ok(GroupedPoints { offsets: vec![0], ..GroupedPoints::default() });
        }
        let Some(cloud) = self.unproject_device(&[(depth, k)])? else { return Ok(empty()) };
        self.group_on_device(&cloud, depth, instance_labels, regions)
    }

    /// K1 grouping of a one-frame cloud already on the device.
    fn group_on_device(
        &self,
        cloud: &DeviceCloud,
        depth: &DepthImage,
        instance_labels: Option<&[u32]>,
        regions: &[ObjectRegion],
    ) -> Result<GroupedPoints, String> {
        let total_points = cloud.total();
        if let Some(done) = super::pack::grouping_without_launch(total_points, depth, instance_labels, regions)? {
            return Ok(done);
        }
        let objects = regions.len() as u64;
        let blocks = total_points.div_ceil(u64::from(WORKGROUP));
        let max = u64::from(self.limits.max_compute_workgroups_per_dimension);
        if blocks > max || objects > max {
            return Err(format!("{total_points} points of {objects} objects exceed the dispatch limits"));
        }
        let gpu_regions = super::pack::gpu_regions(regions);
        let params = GroupParams {
            points: total_points as u32,
            blocks: blocks as u32,
            objects: objects as u32,
            width: depth.width,
            has_labels: u32::from(instance_labels.is_some()),
            _pad: [0; 3],
        };
        let labels_buf = self.storage("labels", bytemuck::cast_slice(instance_labels.unwrap_or(&[])));
        let regions_buf = self.storage("regions", bytemuck::cast_slice(&gpu_regions));
        let counts = self.output("member counts", objects * blocks * 4);
        let offsets = self.output("member offsets", objects * blocks * 4);
        let object_offsets = self.output("object offsets", (objects + 1) * 4);
        let params_buf = self.uniform("params", &params);
        // Bindings in the shader's order; the outputs (7, 8) are sized once the counts are known.
        let mut all = [
            &cloud.points,
            &cloud.pixels,
            &labels_buf,
            &regions_buf,
            &counts,
            &offsets,
            &object_offsets,
            &counts,
            &counts,
            &params_buf,
        ];
        // Pass 1 and 2: counts and offsets; the total sizes the output.
        self.dispatch_all(
            &all,
            &[
                (&self.count_members, &[1, 2, 3, 4, 9], (blocks as u32, objects as u32)),
                (&self.scan_members, &[4, 5, 6, 9], (1, 1)),
            ],
        );
        let object_offsets_host: Vec<u32> =
            bytemuck::pod_collect_to_vec(&self.read_back(&object_offsets, (objects + 1) * 4)?);
        let total = u64::from(object_offsets_host.last().copied().unwrap_or(0));
        if total * 12 > self.limits.max_storage_buffer_binding_size {
            return Err(format!("{total} grouped points exceed one storage binding"));
        }
        let out_points = self.output("grouped points", total * 12);
        let out_pixels = self.output("grouped pixels", total * 4);
        all[7] = &out_points;
        all[8] = &out_pixels;
        self.dispatch_all(&all, &[(&self.write_members, &[0, 1, 2, 3, 5, 7, 8, 9], (blocks as u32, objects as u32))]);
        let point_floats: Vec<f32> = bytemuck::pod_collect_to_vec(&self.read_back(&out_points, total * 12)?);
        let pixel_ids: Vec<u32> = bytemuck::pod_collect_to_vec(&self.read_back(&out_pixels, total * 4)?);
        Ok(GroupedPoints {
            points_in_camera: point_floats.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect(),
            pixels: pixel_ids.into(),
            offsets: object_offsets_host,
        })
    }

    /// K3: exact DBSCAN (see [`crate::geometry::dbscan::dbscan`] for the definitions every backend meets).
    pub fn dbscan(
        &self,
        input: &[crate::geometry::Point3],
        eps: f32,
        min_points: u32,
    ) -> Result<crate::geometry::dbscan::Clustering, String> {
        let job = crate::geometry::dbscan::DbscanJob { points: input, eps, min_points };
        self.dbscan_batch(&[job])?.pop().ok_or_else(|| "DBSCAN returned no clustering".to_string())
    }

    /// K3 for a batch of jobs (see [`crate::geometry::dbscan::dbscan_batch`]): every job of a chunk in one grid and
    /// one set of dispatches, chunked to the adapter's dispatch and binding limits.
    pub fn dbscan_batch(
        &self,
        jobs: &[crate::geometry::dbscan::DbscanJob<'_>],
    ) -> Result<Vec<crate::geometry::dbscan::Clustering>, String> {
        // The cells' coordinates hold 16 bytes per point and at most 12 per point for the occupied cells.
        let max_points = (u64::from(self.limits.max_compute_workgroups_per_dimension) * u64::from(WORKGROUP))
            .min(self.limits.max_storage_buffer_binding_size / 28);
        let mut out = vec![crate::geometry::dbscan::Clustering::default(); jobs.len()];
        for chunk in super::pack::dbscan_chunks(jobs, max_points)? {
            let grid = super::pack::DbscanGrid::new(jobs, &chunk)?;
            let (labels, core) = self.dbscan_grid(&grid)?;
            for (i, c) in chunk.into_iter().zip(grid.clusterings(&labels, &core)?) {
                out[i] = c;
            }
        }
        Ok(out)
    }

    /// One grid's labels and core flags (sorted order).
    fn dbscan_grid(&self, grid: &super::pack::DbscanGrid) -> Result<(Vec<u32>, Vec<u32>), String> {
        let n = grid.params.points as usize;
        let points_buf = self.storage("points", bytemuck::cast_slice(&grid.sorted));
        let xyz_buf = self.storage("cells", bytemuck::cast_slice(&grid.cell_xyz));
        let start_buf = self.storage("cell starts", bytemuck::cast_slice(&grid.cell_start));
        let original_buf = self.storage("original", bytemuck::cast_slice(&grid.original));
        let core_buf = self.output("core", n as u64 * 4);
        let labels_buf = self.output("labels", n as u64 * 4);
        let params_buf = self.uniform("params", &grid.params);
        let jobs_buf = self.storage("jobs", bytemuck::cast_slice(&grid.jobs));
        let all = [&points_buf, &xyz_buf, &start_buf, &original_buf, &core_buf, &labels_buf, &params_buf, &jobs_buf];
        let (x, y) = self.grid(n as u64)?;
        if y > 1 {
            return Err(format!("{n} points need more than one row of workgroups"));
        }
        // The core points; then the clusters: a union-find over the core points (a forest of sorted positions), joined
        // cell by cell (each core point to its cell's first, neighbouring cells when two of their core points are
        // within eps), then each core point's label set to its tree's root (the sorted position of its cluster's
        // point of smallest batch index; `clusterings` renames it to that batch index); then the border points.
        self.dispatch_all(
            &all,
            &[
                (&self.count_neighbours, &[0, 1, 2, 4, 5, 6, 7], (x, 1)),
                (&self.unite, &[0, 1, 2, 3, 4, 5, 6, 7], (x, 1)),
                (&self.flatten, &[4, 5, 6], (x, 1)),
                (&self.assign_borders, &[0, 1, 2, 3, 4, 5, 6, 7], (x, 1)),
            ],
        );
        let labels: Vec<u32> = bytemuck::pod_collect_to_vec(&self.read_back(&labels_buf, n as u64 * 4)?);
        let core: Vec<u32> = bytemuck::pod_collect_to_vec(&self.read_back(&core_buf, n as u64 * 4)?);
        Ok((labels, core))
    }

    /// K4 for a batch of objects (of any frames; see [`crate::geometry::stats::summarize_batch`]): the reductions
    /// run on the device, one workgroup per object, chunked to the storage-binding limit; the hull and oriented
    /// box are built on the host from the device's hull candidates.
    pub fn summarize_batch(
        &self,
        objects: &[StatsInput],
        noise: &NoiseModel,
    ) -> Result<Vec<Option<ObjectSummary>>, String> {
        let max_points = self.limits.max_storage_buffer_binding_size / 12;
        let mut out = vec![None; objects.len()];
        for chunk in super::pack::stats_chunks(objects, max_points)? {
            self.summarize_chunk(objects, &chunk, noise, &mut out)?;
        }
        Ok(out)
    }

    fn summarize_chunk(
        &self,
        objects: &[StatsInput],
        chunk: &[usize],
        noise: &NoiseModel,
        out: &mut [Option<ObjectSummary>],
    ) -> Result<(), String> {
        let pack = super::pack::StatsPack::new(objects, chunk);
        let total = pack.depth_bits.len();
        let n_obj = chunk.len() as u64;
        let record = std::mem::size_of::<GpuObjectStats>() as u64;
        let buffers = [
            self.storage("points", bytemuck::cast_slice(&pack.points)),
            self.storage("depths", bytemuck::cast_slice(&pack.depth_bits)),
            self.storage("objects", bytemuck::cast_slice(&pack.ranges)),
            self.output("stats", n_obj * record),
            self.output("candidates", total as u64 * 4),
            self.uniform("params", &StatsParams { objects: n_obj as u32, _pad: [0; 3] }),
            self.storage("candidate total", bytemuck::bytes_of(&0u32)),
        ];
        let all: Vec<&wgpu::Buffer> = buffers.iter().collect();
        // One workgroup per object.
        self.dispatch(&self.stats, &all, self.grid(n_obj * u64::from(WORKGROUP))?);
        // The statistics first, then only the listed candidates.
        let stats: Vec<GpuObjectStats> = bytemuck::pod_collect_to_vec(&self.read_back(&buffers[3], n_obj * record)?);
        let listed = pack.listed_candidates(&stats)?;
        let candidates: Vec<u32> = bytemuck::pod_collect_to_vec(&self.read_back(&buffers[4], listed as u64 * 4)?);
        pack.summaries(objects, chunk, &stats, &candidates, noise, out)
    }

    /// K2 scores of every hypothesis (see [`crate::geometry::ransac::score_hypotheses`]), drawn on the device.
    pub fn score_hypotheses(
        &self,
        points: &[Point3],
        sample_normals: Option<&[Point3]>,
        frame_key: u32,
        params: &RansacParams,
    ) -> Result<Vec<u32>, String> {
        Ok(self.ground_session(points, sample_normals, frame_key, params)?.score()?.0)
    }

    /// K2 whole (see [`crate::geometry::ransac::fit_ground_plane`]): the cloud is uploaded once; the subsample
    /// gather, the hypothesis draws, the scoring, the refinement's support tests and the final inlier count run on
    /// the device; the planes through the drawn points, the winner and the 3 x 3 fits run on the host with the CPU
    /// reference's code.
    pub fn fit_ground_plane(
        &self,
        points: &[Point3],
        sample_normals: Option<&[Point3]>,
        frame_key: u32,
        params: &RansacParams,
    ) -> Result<Option<PlaneFit>, String> {
        self.ground_session(points, sample_normals, frame_key, params)?.fit(points)
    }

    /// The three point indices of every hypothesis as the device draws them (`shaders/rng.wgsl`), for parity
    /// tests against [`crate::geometry::ransac::hypothesis_indices`]. `points` must hold at least 3 points.
    pub fn hypothesis_draws(
        &self,
        points: &[Point3],
        frame_key: u32,
        params: &RansacParams,
    ) -> Result<Vec<[u32; 3]>, String> {
        let session = self.ground_session(points, None, frame_key, params)?;
        let h = u64::from(params.hypotheses);
        if h == 0 || points.len() < 3 {
            return Ok(Vec::new());
        }
        session.run(&self.ransac_draw, &[4, 5, 7, 8], self.grid(h)?);
        let triples: Vec<u32> = bytemuck::pod_collect_to_vec(&self.read_back(&session.buffers[7], h * 12)?);
        Ok(triples.chunks_exact(3).map(|t| [t[0], t[1], t[2]]).collect())
    }

    /// Uploads a frame's cloud (and the subsample's normals) and gathers the scoring subsample on the device.
    fn ground_session<'a>(
        &'a self,
        points: &[Point3],
        sample_normals: Option<&[Point3]>,
        frame_key: u32,
        params: &'a RansacParams,
    ) -> Result<GroundSession<'a>, String> {
        self.ground_session_on(None, points, sample_normals, frame_key, params)
    }

    /// [`Self::ground_session`] with the cloud already on the device (`device_cloud`, `points`' twin) or uploaded.
    fn ground_session_on<'a>(
        &'a self,
        device_cloud: Option<&wgpu::Buffer>,
        points: &[Point3],
        sample_normals: Option<&[Point3]>,
        frame_key: u32,
        params: &'a RansacParams,
    ) -> Result<GroundSession<'a>, String> {
        let n = u32::try_from(points.len()).map_err(|_| format!("{} points are too many", points.len()))?;
        if u64::from(n) * 12 > self.limits.max_storage_buffer_binding_size {
            return Err(format!("a cloud of {n} points exceeds one storage binding"));
        }
        let sample_index = score_sample_indices(points.len(), params);
        let normals = sample_normals.filter(|m| m.len() == sample_index.len());
        let gpu = RansacParamsGpu {
            hypotheses: params.hypotheses,
            samples: sample_index.len() as u32,
            threshold: params.inlier_threshold_m,
            min_cos: params.normal_agreement_deg.to_radians().cos(),
            use_normals: u32::from(normals.is_some()),
            points: n,
            seed: params.seed,
            frame_key,
        };
        let normals_flat: Vec<f32> = normals.iter().flat_map(|m| m.iter().flatten()).copied().collect();
        let buffers = [
            self.output("hypotheses", u64::from(params.hypotheses) * 32),
            self.output("samples", sample_index.len() as u64 * 12),
            self.storage("normals", bytemuck::cast_slice(&normals_flat)),
            self.output("scores", u64::from(params.hypotheses) * 4),
            self.uniform("params", &gpu),
            match device_cloud {
                Some(buffer) => buffer.clone(),
                None => self.storage("cloud", bytemuck::cast_slice(points)),
            },
            self.storage("sample index", bytemuck::cast_slice(&sample_index)),
            self.output("triples", u64::from(params.hypotheses) * 12),
            self.output("corners", u64::from(params.hypotheses) * 36),
            self.output("mask", sample_index.len() as u64 * 4),
            self.output("count", 4),
            self.uniform("test", &GpuSupport::default()),
        ];
        let session =
            GroundSession { backend: self, buffers, sample_index, use_normals: normals.is_some(), params, gpu };
        if gpu.samples > 0 {
            session.run(&self.ransac_gather, &[1, 4, 5, 6], self.grid(u64::from(gpu.samples))?);
        }
        Ok(session)
    }

    /// A bind group with the bindings `used` (indices into `buffers`), those `pipeline`'s derived layout holds.
    fn bind_subset(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
        used: &[u32],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = used
            .iter()
            .map(|&i| wgpu::BindGroupEntry { binding: i, resource: buffers[i as usize].as_entire_binding() })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }
}
