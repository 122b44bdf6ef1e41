//! The `wgpu` backend: WGSL kernels from `shaders/`, compiled when the backend opens.
//!
//! Device errors (a shader the driver refuses, an out-of-memory) are captured, not panicked on, and come back as
//! `Err` with wgpu's message. Batches are chunked to the adapter's limits (storage-binding size, workgroups per
//! dimension).

use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::geometry::relations::RelationRecord;
use crate::geometry::stats::ObjectSummary;
use crate::geometry::unproject::{ray_factors, DepthData, DepthImage, PointCloud};
use crate::geometry::Intrinsics;

/// The WGSL sources, embedded; `tests/parity.rs` validates each with naga.
pub const SHADERS: [(&str, &str); 3] = [
    ("relations.wgsl", include_str!("../../shaders/relations.wgsl")),
    ("unproject.wgsl", include_str!("../../shaders/unproject.wgsl")),
    ("ransac.wgsl", include_str!("../../shaders/ransac.wgsl")),
];

const WORKGROUP: u32 = 256;

/// Per-frame ranges of a K5 batch. Keep in sync with `FrameRange` in `shaders/relations.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FrameRange {
    pub object_offset: u32,
    pub object_count: u32,
    pub pair_offset: u32,
    pub _pad: u32,
}

/// Uniforms of K5. Keep in sync with `Params` in `shaders/relations.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RelationParams {
    pub frames: u32,
    pub pairs: u32,
    pub _pad: [u32; 2],
}

/// Uniforms of K1. Keep in sync with `Params` in `shaders/unproject.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct UnprojectParams {
    pub width: u32,
    pub height: u32,
    pub pixels: u32,
    pub is_u16: u32,
    pub units_per_meter: f32,
    pub invalid_value: u32,
    pub blocks: u32,
    pub _pad: u32,
}

/// One ground-plane hypothesis as K2 scores it. Keep in sync with `Hypothesis` in `shaders/ransac.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GpuHypothesis {
    pub plane: [f32; 4],
    pub admissible: u32,
    pub _pad: [u32; 3],
}

/// Uniforms of K2 scoring. Keep in sync with `Params` in `shaders/ransac.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RansacParamsGpu {
    pub hypotheses: u32,
    pub samples: u32,
    pub threshold: f32,
    pub min_cos: f32,
    pub use_normals: u32,
    pub _pad: [u32; 3],
}

const _: () = assert!(std::mem::size_of::<GpuHypothesis>() == 32);
const _: () = assert!(std::mem::size_of::<RansacParamsGpu>() == 32);
const _: () = assert!(std::mem::size_of::<FrameRange>() == 16);
const _: () = assert!(std::mem::size_of::<RelationParams>() == 16);
const _: () = assert!(std::mem::size_of::<UnprojectParams>() == 32);

/// An open device with the kernels compiled.
pub struct WgpuBackend {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    errors: Arc<Mutex<Vec<String>>>,
    relations: wgpu::ComputePipeline,
    ransac: wgpu::ComputePipeline,
    count_valid: wgpu::ComputePipeline,
    scan_blocks: wgpu::ComputePipeline,
    write_points: wgpu::ComputePipeline,
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
        let backend = WgpuBackend {
            relations: pipeline(&relations_module, "main"),
            ransac: pipeline(&ransac_module, "main"),
            count_valid: pipeline(&unproject_module, "count_valid"),
            scan_blocks: pipeline(&unproject_module, "scan_blocks"),
            write_points: pipeline(&unproject_module, "write_points"),
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
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    fn bind(&self, pipeline: &wgpu::ComputePipeline, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
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
        let mut start = 0;
        while start < frames.len() {
            // As many frames as fit one output binding (at least one frame per chunk).
            let mut end = start;
            let mut pairs = 0u64;
            while end < frames.len() {
                let n = frames[end].len() as u64;
                let p = n * n.saturating_sub(1);
                if end > start && pairs + p > max_pairs {
                    break;
                }
                if p > max_pairs {
                    return Err(format!("a frame with {n} objects has more pairs than one storage binding holds"));
                }
                pairs += p;
                end += 1;
            }
            out.extend(self.relate_chunk(&frames[start..end], pairs)?);
            start = end;
        }
        Ok(out)
    }

    fn relate_chunk(&self, frames: &[&[ObjectSummary]], pairs: u64) -> Result<Vec<Vec<RelationRecord>>, String> {
        let mut objects: Vec<ObjectSummary> = Vec::new();
        let mut ranges = Vec::with_capacity(frames.len());
        let mut pair_offset = 0u32;
        for f in frames {
            let n = f.len() as u32;
            ranges.push(FrameRange { object_offset: objects.len() as u32, object_count: n, pair_offset, _pad: 0 });
            objects.extend_from_slice(f);
            pair_offset += n * n.saturating_sub(1);
        }
        let record = std::mem::size_of::<RelationRecord>() as u64;
        if pairs > 0 {
            let objects_buf = self.storage("objects", bytemuck::cast_slice(&objects));
            let ranges_buf = self.storage("frames", bytemuck::cast_slice(&ranges));
            let out_buf = self.output("relations", pairs * record);
            let params = self
                .uniform("params", &RelationParams { frames: ranges.len() as u32, pairs: pairs as u32, _pad: [0; 2] });
            let bind = self.bind(&self.relations, &[&objects_buf, &ranges_buf, &out_buf, &params]);
            let (x, y) = self.grid(pairs)?;
            let mut encoder = self.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                pass.set_pipeline(&self.relations);
                pass.set_bind_group(0, &bind, &[]);
                pass.dispatch_workgroups(x, y, 1);
            }
            self.queue.submit([encoder.finish()]);
            let bytes = self.read_back(&out_buf, pairs * record)?;
            let records: Vec<RelationRecord> = bytemuck::pod_collect_to_vec(&bytes);
            let mut out = Vec::with_capacity(frames.len());
            for r in &ranges {
                let n = r.object_count as usize;
                let start = r.pair_offset as usize;
                out.push(records[start..start + n * n.saturating_sub(1)].to_vec());
            }
            return Ok(out);
        }
        Ok(frames.iter().map(|_| Vec::new()).collect())
    }

    /// K1 for the whole frame: every valid depth pixel in row-major order (see
    /// [`crate::geometry::unproject::unproject_depth`]). 16-bit depth is uploaded as 16-bit.
    pub fn unproject(&self, depth: &DepthImage, k: &Intrinsics) -> Result<PointCloud, String> {
        let pixels = depth.len() as u64;
        if (depth.width, depth.height) != (k.width, k.height) {
            return Err(format!(
                "depth is {}x{} but the intrinsics say {}x{}",
                depth.width, depth.height, k.width, k.height
            ));
        }
        if pixels == 0 {
            return Ok(PointCloud::default());
        }
        let point_bytes = pixels * 12;
        if point_bytes > self.limits.max_storage_buffer_binding_size {
            return Err(format!("a {}x{} frame exceeds one storage binding", depth.width, depth.height));
        }
        let (x, y) = self.grid(pixels)?;
        if y > 1 {
            return Err(format!("a {}x{} frame needs more than one row of workgroups", depth.width, depth.height));
        }
        let (words, is_u16, units_per_meter, invalid_value) = match &depth.data {
            DepthData::U16 { values, units_per_meter, invalid_value } => {
                let mut words = vec![0u32; values.len().div_ceil(2)];
                for (i, v) in values.iter().enumerate() {
                    words[i / 2] |= u32::from(*v) << (16 * (i % 2));
                }
                (words, 1, *units_per_meter, invalid_value.map_or(u32::MAX, u32::from))
            }
            DepthData::F32 { values } => (values.iter().map(|v| v.to_bits()).collect(), 0, 1.0, u32::MAX),
        };
        let (ray_x, ray_y) = ray_factors(k);
        let blocks = x;
        let params = UnprojectParams {
            width: depth.width,
            height: depth.height,
            pixels: pixels as u32,
            is_u16,
            units_per_meter,
            invalid_value,
            blocks,
            _pad: 0,
        };
        let depth_buf = self.storage("depth", bytemuck::cast_slice(&words));
        let ray_x_buf = self.storage("ray_x", bytemuck::cast_slice(&ray_x));
        let ray_y_buf = self.storage("ray_y", bytemuck::cast_slice(&ray_y));
        let counts = self.output("block counts", u64::from(blocks) * 4);
        let offsets = self.output("block offsets", (u64::from(blocks) + 1) * 4);
        let points = self.output("points", point_bytes);
        let pixel_of_point = self.output("pixels", pixels * 4);
        let params_buf = self.uniform("params", &params);
        let buffers = [&depth_buf, &ray_x_buf, &ray_y_buf, &counts, &offsets, &points, &pixel_of_point, &params_buf];
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for (pipeline, groups) in
                [(&self.count_valid, blocks), (&self.scan_blocks, 1), (&self.write_points, blocks)]
            {
                // Each entry point uses a subset of the bindings: bind exactly those its layout holds.
                let bind = self.bind_used(pipeline, &buffers);
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &bind, &[]);
                pass.dispatch_workgroups(groups, 1, 1);
            }
        }
        self.queue.submit([encoder.finish()]);
        let total_bytes = self.read_back(&offsets, (u64::from(blocks) + 1) * 4)?;
        let offsets_host: Vec<u32> = bytemuck::pod_collect_to_vec(&total_bytes);
        let total = u64::from(offsets_host.last().copied().unwrap_or(0));
        let point_floats: Vec<f32> = bytemuck::pod_collect_to_vec(&self.read_back(&points, total * 12)?);
        let pixel_ids: Vec<u32> = bytemuck::pod_collect_to_vec(&self.read_back(&pixel_of_point, total * 4)?);
        Ok(PointCloud {
            points_in_camera: point_floats.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect(),
            pixels: pixel_ids,
        })
    }

    /// K2 scores of every hypothesis (see [`crate::geometry::ransac::score_hypotheses`]): the planes are built on
    /// the host by the CPU reference's code, the counting runs on the device, one workgroup per hypothesis.
    pub fn score_hypotheses(
        &self,
        points: &[crate::geometry::Point3],
        sample_normals: Option<&[crate::geometry::Point3]>,
        frame_key: u32,
        params: &crate::geometry::ransac::RansacParams,
    ) -> Result<Vec<u32>, String> {
        let inputs = crate::geometry::ransac::scoring_inputs(points, sample_normals, frame_key, params);
        let h = inputs.planes.len() as u64;
        if h == 0 {
            return Ok(Vec::new());
        }
        let hyps: Vec<GpuHypothesis> = inputs
            .planes
            .iter()
            .map(|p| match p {
                Some(plane) => GpuHypothesis { plane: *plane, admissible: 1, _pad: [0; 3] },
                None => GpuHypothesis::default(),
            })
            .collect();
        let samples: Vec<f32> = inputs.sample_points.iter().flatten().copied().collect();
        let normals: Vec<f32> = inputs.sample_normals.iter().flatten().flatten().copied().collect();
        let params_gpu = RansacParamsGpu {
            hypotheses: h as u32,
            samples: inputs.sample_points.len() as u32,
            threshold: params.inlier_threshold_m,
            min_cos: inputs.min_cos,
            use_normals: u32::from(inputs.sample_normals.is_some()),
            _pad: [0; 3],
        };
        let hyp_buf = self.storage("hypotheses", bytemuck::cast_slice(&hyps));
        let sample_buf = self.storage("samples", bytemuck::cast_slice(&samples));
        let normal_buf = self.storage("normals", bytemuck::cast_slice(&normals));
        let scores = self.output("scores", h * 4);
        let params_buf = self.uniform("params", &params_gpu);
        let bind = self.bind(&self.ransac, &[&hyp_buf, &sample_buf, &normal_buf, &scores, &params_buf]);
        // One workgroup per hypothesis.
        let (x, y) = self.grid(h * u64::from(WORKGROUP))?;
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.ransac);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
        self.queue.submit([encoder.finish()]);
        Ok(bytemuck::pod_collect_to_vec(&self.read_back(&scores, h * 4)?))
    }

    /// A bind group with the bindings `pipeline`'s (derived) layout uses, taken from `buffers` by binding index.
    fn bind_used(&self, pipeline: &wgpu::ComputePipeline, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let used: &[u32] = if std::ptr::eq(pipeline, &self.count_valid) {
            &[0, 3, 7]
        } else if std::ptr::eq(pipeline, &self.scan_blocks) {
            &[3, 4, 7]
        } else {
            &[0, 1, 2, 4, 5, 6, 7]
        };
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
