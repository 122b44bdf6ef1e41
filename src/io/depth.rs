//! Depth and label image decoding: 16-bit PNG (and 8-bit for labels) and NumPy `.npy` arrays.
//!
//! These functions take bytes, not paths, so that fuzz targets and tests can call them directly.

use crate::geometry::unproject::{DepthData, DepthImage};

/// A decoded single-channel integer image.
#[derive(Clone, Debug, PartialEq)]
pub struct GrayImage {
    pub width: u32,
    pub height: u32,
    pub bit_depth: u8,
    pub values: Vec<u16>,
}

/// Upper bound on decoded pixels (a 32k × 32k image); larger headers are rejected before allocating.
pub const MAX_PIXELS: u64 = 1 << 30;

/// Decodes a single-channel 8- or 16-bit PNG.
pub fn decode_gray_png(bytes: &[u8]) -> Result<GrayImage, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let info = reader.info();
    let (width, height) = (info.width, info.height);
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(format!("{width}x{height} is too large"));
    }
    if info.color_type != png::ColorType::Grayscale {
        return Err(format!("expected a single-channel (grayscale) PNG, found {:?}", info.color_type));
    }
    let bit_depth = match info.bit_depth {
        png::BitDepth::Eight => 8u8,
        png::BitDepth::Sixteen => 16u8,
        other => return Err(format!("expected 8- or 16-bit samples, found {other:?}")),
    };
    let size = reader.output_buffer_size().ok_or_else(|| "image too large".to_string())?;
    let n = width as usize * height as usize;
    // 16-bit samples are decoded straight into the values (big-endian bytes, swapped in place afterwards): no second
    // frame-sized buffer.
    let values: Vec<u16> = if bit_depth == 16 {
        if size != 2 * n {
            return Err(format!("{size} bytes of samples for {n} pixels of 16 bits"));
        }
        let mut values = vec![0u16; n];
        let frame = reader.next_frame(bytemuck::cast_slice_mut(&mut values)).map_err(|e| e.to_string())?;
        if frame.buffer_size() != size {
            return Err("truncated pixel data".into());
        }
        for v in &mut values {
            *v = u16::from_be(*v);
        }
        values
    } else {
        let mut buf = vec![0u8; size];
        let frame = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
        buf[..frame.buffer_size().min(size)].iter().take(n).map(|&b| u16::from(b)).collect()
    };
    if values.len() != n {
        return Err("truncated pixel data".into());
    }
    Ok(GrayImage { width, height, bit_depth, values })
}

/// A decoded `.npy` array: its shape and values.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyArray {
    F32 { shape: Vec<usize>, values: Vec<f32> },
    U16 { shape: Vec<usize>, values: Vec<u16> },
}

/// Parses a NumPy `.npy` file (format versions 1–3) holding a C-order array of little-endian `f4`, `f8` (read as
/// f32) or `u2`.
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray, String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (bad magic)".into());
    }
    let major = bytes[6];
    let (header_len, start): (usize, usize) = match major {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let end = start.checked_add(header_len).filter(|&e| e <= bytes.len()).ok_or("truncated header")?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| "header is not text")?;
    let descr = header_value(header, "descr").ok_or("header has no 'descr'")?;
    let fortran = header_value(header, "fortran_order").ok_or("header has no 'fortran_order'")?;
    let shape_text = header_value(header, "shape").ok_or("header has no 'shape'")?;
    if fortran.trim() != "False" {
        return Err("Fortran-order arrays are not supported; save with np.ascontiguousarray".into());
    }
    let shape_inner = shape_text.trim().strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or("bad shape")?;
    let shape: Vec<usize> = shape_inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape entry {s:?}")))
        .collect::<Result<_, _>>()?;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("shape too large")?;
    if count as u64 > MAX_PIXELS {
        return Err("array too large".into());
    }
    let data = &bytes[end..];
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let need = |size: usize| {
        let want = count.checked_mul(size).ok_or("array too large")?;
        if data.len() < want {
            Err(format!("truncated data: {} bytes for {count} values of {size} bytes", data.len()))
        } else {
            Ok(&data[..want])
        }
    };
    match descr {
        "<f4" => {
            let d = need(4)?;
            Ok(NpyArray::F32 {
                shape,
                values: d.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            })
        }
        "<f8" => {
            let d = need(8)?;
            let values = d
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
                .collect();
            Ok(NpyArray::F32 { shape, values })
        }
        "<u2" => {
            let d = need(2)?;
            Ok(NpyArray::U16 { shape, values: d.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect() })
        }
        other => Err(format!("unsupported dtype {other:?} (expected <f4, <f8 or <u2)")),
    }
}

/// The text of `key`'s value in a Python dict literal header (up to the next top-level comma).
fn header_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pos = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[pos + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?;
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    None
}

/// Decodes depth bytes by format (`png` or `npy`) into a [`DepthImage`]. Integer depth needs `units_per_meter`.
pub fn decode_depth(
    bytes: &[u8],
    format: DepthFormat,
    units_per_meter: Option<f64>,
    invalid_value: Option<u16>,
) -> Result<DepthImage, String> {
    let units = || {
        units_per_meter
            .map(|u| u as f32)
            .filter(|u| u.is_finite() && *u > 0.0)
            .ok_or_else(|| "integer depth needs a positive depth_units_per_meter in the manifest".to_string())
    };
    match format {
        DepthFormat::Png => {
            let img = decode_gray_png(bytes)?;
            if img.bit_depth != 16 {
                return Err("depth PNG must be 16-bit single-channel (found 8-bit)".into());
            }
            Ok(DepthImage {
                width: img.width,
                height: img.height,
                data: DepthData::U16 { values: img.values, units_per_meter: units()?, invalid_value },
            })
        }
        DepthFormat::Npy => {
            let arr = parse_npy(bytes)?;
            let hw = |shape: &[usize]| match *shape {
                [h, w] | [h, w, 1] => {
                    u32::try_from(w).ok().zip(u32::try_from(h).ok()).ok_or("dimension too large".to_string())
                }
                _ => Err(format!("depth array must have shape (H, W), got {shape:?}")),
            };
            match arr {
                NpyArray::F32 { shape, values } => {
                    let (width, height) = hw(&shape)?;
                    Ok(DepthImage { width, height, data: DepthData::F32 { values } })
                }
                NpyArray::U16 { shape, values } => {
                    let (width, height) = hw(&shape)?;
                    Ok(DepthImage {
                        width,
                        height,
                        data: DepthData::U16 { values, units_per_meter: units()?, invalid_value },
                    })
                }
            }
        }
    }
}

/// Depth file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepthFormat {
    Png,
    Npy,
}

impl DepthFormat {
    /// The format a file name implies, or `None` for an unsupported extension.
    pub fn from_path(path: &std::path::Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "png" => Some(DepthFormat::Png),
            "npy" => Some(DepthFormat::Npy),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn gray_png(width: u32, height: u32, depth: png::BitDepth, samples: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(depth);
        encoder.write_header().unwrap().write_image_data(samples).unwrap();
        out
    }

    #[test]
    fn gray_pngs_decode_to_their_samples() {
        // 16-bit: values whose two bytes differ (a byte-order slip changes them), the extremes and zero.
        let values: Vec<u16> = (0..35u32).map(|i| (i * 1871 + 258) as u16).chain([0, 1, 255, 256, u16::MAX]).collect();
        let be: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
        let img = decode_gray_png(&gray_png(8, 5, png::BitDepth::Sixteen, &be)).unwrap();
        assert_eq!((img.width, img.height, img.bit_depth), (8, 5, 16));
        assert_eq!(img.values, values);
        let bytes: Vec<u8> = (0..21u8).map(|i| i.wrapping_mul(37)).collect();
        let img = decode_gray_png(&gray_png(7, 3, png::BitDepth::Eight, &bytes)).unwrap();
        assert_eq!((img.width, img.height, img.bit_depth), (7, 3, 8));
        assert_eq!(img.values, bytes.iter().map(|&b| u16::from(b)).collect::<Vec<_>>());
        // A truncated file is an error, not a panic or a short image.
        let png = gray_png(8, 5, png::BitDepth::Sixteen, &be);
        assert!(decode_gray_png(&png[..png.len() - 20]).is_err());
        // Interlaced (Adam7), 16-bit, 13x9: pixel (x, y) holds (1000 x + 37 y + 258) mod 65536. Written by a few lines
        // of Python (each pass's rows with filter 0, zlib), as `png`'s encoder writes no interlaced images; Pillow
        // reads the same values. (Not in the depth fuzz corpus: as a seed it took the 30 s smoke run from about 2,900
        // inputs a second to about 33, on mutated headers of millions of interlaced pixels.)
        let img = decode_gray_png(include_bytes!("testdata/interlaced16_13x9.png")).unwrap();
        assert_eq!((img.width, img.height, img.bit_depth), (13, 9, 16));
        let want: Vec<u16> =
            (0..9u32).flat_map(|y| (0..13u32).map(move |x| ((1000 * x + 37 * y + 258) % 65536) as u16)).collect();
        assert_eq!(img.values, want);
    }

    #[test]
    fn npy_f32_and_u16_round_trip() {
        let vals = [1.5f32, f32::NAN, 0.0, 2.25, 3.0, 4.0];
        let data: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let d = decode_depth(&npy("<f4", "(2, 3)", &data), DepthFormat::Npy, None, None).unwrap();
        assert_eq!((d.width, d.height), (3, 2));
        assert_eq!(d.depth_m(0), Some(1.5));
        assert_eq!(d.depth_m(1), None);
        assert_eq!(d.depth_m(2), None);
        let data: Vec<u8> = [1000u16, 0, 65535, 2000].iter().flat_map(|v| v.to_le_bytes()).collect();
        let d = decode_depth(&npy("<u2", "(2, 2)", &data), DepthFormat::Npy, Some(1000.0), Some(65535)).unwrap();
        assert_eq!(d.depth_m(0), Some(1.0));
        assert_eq!(d.depth_m(2), None);
        assert_eq!(d.depth_m(3), Some(2.0));
    }

    #[test]
    fn npy_rejects_bad_input() {
        assert!(parse_npy(b"hello").is_err());
        let data = [0u8; 8];
        assert!(parse_npy(&npy("<f4", "(2, 3)", &data)).unwrap_err().contains("truncated"));
        assert!(parse_npy(&npy("<i8", "(1,)", &data)).unwrap_err().contains("dtype"));
        assert!(decode_depth(&npy("<f4", "(2,)", &data), DepthFormat::Npy, None, None).unwrap_err().contains("shape"));
        assert!(decode_depth(&npy("<u2", "(2, 2)", &data), DepthFormat::Npy, None, None)
            .unwrap_err()
            .contains("units"));
    }
}
