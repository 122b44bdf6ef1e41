//! Frame input: manifests, depth and label images, object annotations.

pub mod depth;
pub mod fuzzing;
pub mod manifest;
pub mod objects;

use std::path::Path;

pub use manifest::{find_manifests, read_manifest, FrameSpec, ObjectsSpec};
pub use objects::ObjectDef;

use crate::error::{Error, Result};
use crate::geometry::unproject::DepthImage;
use crate::geometry::Intrinsics;
use depth::{decode_depth, DepthFormat};

/// Where a frame's depth came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DepthSource {
    /// The depth file of the manifest (a sensor, or a dataset's depth).
    File,
    /// A metric depth model run on the colour image (the model's name).
    Model { model: String },
}

/// A frame with its depth decoded and its objects resolved to pixel regions.
#[derive(Clone, Debug)]
pub struct LoadedFrame {
    pub spec: FrameSpec,
    /// The camera: the manifest's, or assumed from a field of view (`intrinsics_assumed`).
    pub intrinsics: Intrinsics,
    pub intrinsics_assumed: bool,
    /// `None` until a depth model fills it when the manifest gives no depth file.
    pub depth: Option<DepthImage>,
    pub depth_source: DepthSource,
    /// The decoded colour image, when [`LoadOptions::decode_color`] asked for it (models need it).
    pub color: Option<image::RgbImage>,
    /// Instance-label image as ids (row-major), when the objects come from one (or from detections refined by a
    /// segmentation mask).
    pub instance_labels: Option<Vec<u32>>,
    pub objects: Vec<ObjectDef>,
    /// The image filter's verdict, when a filter ran.
    pub image_filter: Option<crate::models::FilterDecision>,
}

/// What [`load_frame_with`] decodes besides depth.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadOptions {
    /// Decode the colour image (models need its pixels; otherwise only its header is read to check its size).
    pub decode_color: bool,
    /// Horizontal field of view assumed for frames without intrinsics (and without their own `hfov_deg`).
    pub default_hfov_deg: f64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { decode_color: false, default_hfov_deg: 60.0 }
    }
}

/// A pinhole camera with horizontal field of view `hfov_deg`, square pixels, principal point at the centre.
pub fn assumed_intrinsics(width: u32, height: u32, hfov_deg: f64) -> Intrinsics {
    let f = f64::from(width) / 2.0 / (hfov_deg.to_radians() / 2.0).tan();
    Intrinsics { fx: f, fy: f, cx: (f64::from(width) - 1.0) / 2.0, cy: (f64::from(height) - 1.0) / 2.0, width, height }
}

pub(crate) fn read_file(frame: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io { frame: frame.to_string(), path: path.to_path_buf(), source })
}

/// [`load_frame_with`] with the default options (colour header only).
pub fn load_frame(spec: &FrameSpec) -> Result<LoadedFrame> {
    load_frame_with(spec, &LoadOptions::default())
}

fn load_depth(spec: &FrameSpec, path: &Path) -> Result<DepthImage> {
    let frame = spec.key.as_str();
    let format = DepthFormat::from_path(path).ok_or_else(|| Error::ImageFormat {
        frame: frame.to_string(),
        path: path.to_path_buf(),
        message: "unsupported depth file type (expected .png or .npy)".into(),
    })?;
    let bytes = read_file(frame, path)?;
    let depth = decode_depth(&bytes, format, spec.depth_units_per_meter, spec.depth_invalid_value)
        .map_err(|message| Error::Decode { frame: frame.to_string(), path: path.to_path_buf(), message })?;
    if !depth.any_valid() {
        return Err(Error::InvalidDepth {
            frame: frame.to_string(),
            path: path.to_path_buf(),
            message: "no valid depth pixel (all zero, invalid code, NaN or non-positive)".into(),
        });
    }
    Ok(depth)
}

/// Reads and checks everything a frame needs: depth (decoded), colour (decoded, or its header only to check its
/// size), objects. Frames without intrinsics get assumed ones from a field of view.
pub fn load_frame_with(spec: &FrameSpec, options: &LoadOptions) -> Result<LoadedFrame> {
    let frame = spec.key.as_str();
    let depth = match &spec.depth {
        Some(path) => Some((path, load_depth(spec, path)?)),
        None => None,
    };
    let color = match &spec.color {
        Some(path) if options.decode_color => {
            let bytes = read_file(frame, path)?;
            let img = image::load_from_memory(&bytes).map_err(|e| Error::Decode {
                frame: frame.to_string(),
                path: path.clone(),
                message: e.to_string(),
            })?;
            let (w, h) = (img.width(), img.height());
            Some((path, w, h, Some(img.into_rgb8())))
        }
        Some(path) => {
            let reader = image::ImageReader::open(path).map_err(|source| Error::Io {
                frame: frame.to_string(),
                path: path.clone(),
                source,
            })?;
            let (w, h) = reader
                .with_guessed_format()
                .map_err(|source| Error::Io { frame: frame.to_string(), path: path.clone(), source })?
                .into_dimensions()
                .map_err(|e| Error::Decode { frame: frame.to_string(), path: path.clone(), message: e.to_string() })?;
            Some((path, w, h, None))
        }
        None => None,
    };

    // The frame's size: the intrinsics', else the depth's, else the colour's.
    let (intrinsics, assumed) = match (&spec.intrinsics, &depth, &color) {
        (Some(k), _, _) => (*k, false),
        (None, Some((_, d)), _) => {
            (assumed_intrinsics(d.width, d.height, spec.hfov_deg.unwrap_or(options.default_hfov_deg)), true)
        }
        (None, None, Some((_, w, h, _))) => {
            (assumed_intrinsics(*w, *h, spec.hfov_deg.unwrap_or(options.default_hfov_deg)), true)
        }
        (None, None, None) => {
            return Err(Error::Manifest {
                path: spec.manifest.clone(),
                line: spec.line,
                message: format!("frame {}: needs \"color\" or \"depth\"", spec.id),
            })
        }
    };
    if assumed {
        intrinsics.validate().map_err(|message| Error::Intrinsics {
            frame: frame.to_string(),
            path: spec.manifest.clone(),
            message: format!("assumed from the image size and field of view: {message}"),
        })?;
    }
    let k = &intrinsics;
    let size_error = |path: &Path, what: &str, w: u32, h: u32| Error::ImageFormat {
        frame: frame.to_string(),
        path: path.to_path_buf(),
        message: format!(
            "{what} is {w}x{h} but the {} say {}x{}",
            if assumed { "depth image and assumed intrinsics" } else { "intrinsics" },
            k.width,
            k.height
        ),
    };
    if let Some((path, d)) = &depth {
        if (d.width, d.height) != (k.width, k.height) {
            return Err(size_error(path, "the depth image", d.width, d.height));
        }
    }
    if let Some((path, w, h, _)) = &color {
        if (*w, *h) != (k.width, k.height) {
            return Err(size_error(path, "the colour image", *w, *h));
        }
    }

    let (instance_labels, objects) = objects::load_objects(spec, k.width, k.height)?;
    Ok(LoadedFrame {
        spec: spec.clone(),
        intrinsics,
        intrinsics_assumed: assumed,
        depth: depth.map(|(_, d)| d),
        depth_source: DepthSource::File,
        color: color.and_then(|(_, _, _, img)| img),
        instance_labels,
        objects,
        image_filter: None,
    })
}
