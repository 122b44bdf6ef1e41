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
use depth::{decode_depth, DepthFormat};

/// A frame with its depth decoded and its objects resolved to pixel regions.
#[derive(Clone, Debug)]
pub struct LoadedFrame {
    pub spec: FrameSpec,
    pub depth: DepthImage,
    /// Instance-label image as ids (row-major), when the objects come from one.
    pub instance_labels: Option<Vec<u32>>,
    pub objects: Vec<ObjectDef>,
}

pub(crate) fn read_file(frame: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io { frame: frame.to_string(), path: path.to_path_buf(), source })
}

/// Reads and checks everything a frame needs: depth (decoded), colour (header only: size check), objects.
pub fn load_frame(spec: &FrameSpec) -> Result<LoadedFrame> {
    let frame = spec.key.as_str();
    let k = &spec.intrinsics;
    let size_error = |path: &Path, what: &str, w: u32, h: u32| Error::ImageFormat {
        frame: frame.to_string(),
        path: path.to_path_buf(),
        message: format!("{what} is {w}x{h} but the intrinsics say {}x{}", k.width, k.height),
    };

    let format = DepthFormat::from_path(&spec.depth).ok_or_else(|| Error::ImageFormat {
        frame: frame.to_string(),
        path: spec.depth.clone(),
        message: "unsupported depth file type (expected .png or .npy)".into(),
    })?;
    let bytes = read_file(frame, &spec.depth)?;
    let depth = decode_depth(&bytes, format, spec.depth_units_per_meter, spec.depth_invalid_value)
        .map_err(|message| Error::Decode { frame: frame.to_string(), path: spec.depth.clone(), message })?;
    if (depth.width, depth.height) != (k.width, k.height) {
        return Err(size_error(&spec.depth, "the depth image", depth.width, depth.height));
    }
    if !depth.any_valid() {
        return Err(Error::InvalidDepth {
            frame: frame.to_string(),
            path: spec.depth.clone(),
            message: "no valid depth pixel (all zero, invalid code, NaN or non-positive)".into(),
        });
    }

    if let Some(color) = &spec.color {
        let reader = image::ImageReader::open(color).map_err(|source| Error::Io {
            frame: frame.to_string(),
            path: color.clone(),
            source,
        })?;
        let (w, h) = reader
            .with_guessed_format()
            .map_err(|source| Error::Io { frame: frame.to_string(), path: color.clone(), source })?
            .into_dimensions()
            .map_err(|e| Error::Decode { frame: frame.to_string(), path: color.clone(), message: e.to_string() })?;
        if (w, h) != (k.width, k.height) {
            return Err(size_error(color, "the colour image", w, h));
        }
    }

    let (instance_labels, objects) = objects::load_objects(spec)?;
    Ok(LoadedFrame { spec: spec.clone(), depth, instance_labels, objects })
}
