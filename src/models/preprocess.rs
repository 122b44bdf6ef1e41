//! Frame → model input tensor (resize, channel order, normalisation, layout), and the mapping back.

use image::imageops::FilterType;
use image::RgbImage;

use super::card::{ChannelOrder, InputSpec, Layout, Resize};

/// How frame pixels map to model-input pixels: `x_in = x_frame · scale_x` (both in pixel-edge units, origin at
/// the top-left corner); the image occupies `[0, content_w) × [0, content_h)` of the input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputTransform {
    pub scale_x: f32,
    pub scale_y: f32,
    pub content_w: u32,
    pub content_h: u32,
    pub frame_w: u32,
    pub frame_h: u32,
}

impl InputTransform {
    pub fn new(frame_w: u32, frame_h: u32, input: &InputSpec) -> Self {
        let (iw, ih) = (input.width, input.height);
        let (cw, ch) = match input.resize {
            Resize::Stretch => (iw, ih),
            Resize::Letterbox => {
                // As the YOLOX reference preprocessing: r = min(W/w, H/h), content size int(w·r) × int(h·r).
                let r = (f64::from(iw) / f64::from(frame_w)).min(f64::from(ih) / f64::from(frame_h));
                let cw = ((f64::from(frame_w) * r) as u32).clamp(1, iw);
                let ch = ((f64::from(frame_h) * r) as u32).clamp(1, ih);
                (cw, ch)
            }
        };
        let (sx, sy) = match input.resize {
            Resize::Stretch => (iw as f32 / frame_w as f32, ih as f32 / frame_h as f32),
            Resize::Letterbox => {
                let r = (iw as f32 / frame_w as f32).min(ih as f32 / frame_h as f32);
                (r, r)
            }
        };
        InputTransform { scale_x: sx, scale_y: sy, content_w: cw, content_h: ch, frame_w, frame_h }
    }

    /// A model-input box `[x0, y0, x1, y1]` in frame pixels, clipped to the frame.
    pub fn box_to_frame(&self, b: [f32; 4]) -> [f32; 4] {
        let (w, h) = (self.frame_w as f32, self.frame_h as f32);
        [
            (b[0] / self.scale_x).clamp(0.0, w),
            (b[1] / self.scale_y).clamp(0.0, h),
            (b[2] / self.scale_x).clamp(0.0, w),
            (b[3] / self.scale_y).clamp(0.0, h),
        ]
    }
}

/// Writes one frame into `out` (one batch slot: `3 · width · height` values) and returns the transform.
///
/// Resizing is the `image` crate's triangle (bilinear, antialiased when shrinking) filter on 8-bit RGB; each value
/// is `(pixel · scale − mean[c]) / std[c]` with `c` in the card's channel order; letterbox padding is `pad_value`
/// before normalisation.
pub fn write_input(img: &RgbImage, input: &InputSpec, out: &mut [f32]) -> InputTransform {
    let t = InputTransform::new(img.width(), img.height(), input);
    let resized;
    let src = if (img.width(), img.height()) == (t.content_w, t.content_h) {
        img
    } else {
        resized = image::imageops::resize(img, t.content_w, t.content_h, FilterType::Triangle);
        &resized
    };
    let (w, h) = (input.width as usize, input.height as usize);
    let plane = w * h;
    let norm = |c: usize, v: f32| (v * input.scale - input.mean[c]) / input.std[c];
    let order: [usize; 3] = match input.channel_order {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    let pad = [norm(0, input.pad_value), norm(1, input.pad_value), norm(2, input.pad_value)];
    let (cw, ch) = (t.content_w as usize, t.content_h as usize);
    let raw = src.as_raw();
    for y in 0..h {
        for x in 0..w {
            let inside = x < cw && y < ch;
            for (c, &srcc) in order.iter().enumerate() {
                let v = if inside { norm(c, f32::from(raw[(y * cw + x) * 3 + srcc])) } else { pad[c] };
                let idx = match input.layout {
                    Layout::Nchw => c * plane + y * w + x,
                    Layout::Nhwc => (y * w + x) * 3 + c,
                };
                out[idx] = v;
            }
        }
    }
    t
}
