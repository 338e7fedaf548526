//! QR rendering of code tokens and place codes (qrcode crate), as SVG and PNG.

use qrcode::{Color, EcLevel, QrCode};

use crate::error::HealthCodeError;

/// Modules of white border around the symbol (the standard's quiet zone).
const QUIET_ZONE: usize = 4;

fn code(text: &str) -> Result<QrCode, HealthCodeError> {
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|e| {
        HealthCodeError::InvalidInput {
            field: "token",
            rule: format!("does not fit in a QR code: {e}"),
        }
    })
}

/// Renders `text` as an SVG document.
pub fn svg(text: &str, colour: &str) -> Result<String, HealthCodeError> {
    let code = code(text)?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .dark_color(qrcode::render::svg::Color(colour))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .quiet_zone(true)
        .build())
}

/// Renders `text` as a grayscale PNG with `scale` pixels per module.
pub fn png(text: &str, scale: usize) -> Result<Vec<u8>, HealthCodeError> {
    let code = code(text)?;
    let scale = scale.clamp(1, 32);
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * scale;
    let mut pixels = vec![255u8; side * side];
    for y in 0..modules {
        for x in 0..modules {
            if colors[y * modules + x] == Color::Dark {
                for dy in 0..scale {
                    let row = ((y + QUIET_ZONE) * scale + dy) * side;
                    let start = row + (x + QUIET_ZONE) * scale;
                    pixels[start..start + scale].fill(0);
                }
            }
        }
    }
    let side32 = u32::try_from(side).map_err(|_| HealthCodeError::InvalidInput {
        field: "scale",
        rule: "image too large".into(),
    })?;
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, side32, side32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let fail = |e: png::EncodingError| HealthCodeError::InvalidInput {
            field: "png",
            rule: e.to_string(),
        };
        let mut writer = encoder.write_header().map_err(fail)?;
        writer.write_image_data(&pixels).map_err(fail)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_renders_as_svg_and_png() {
        let text = format!(
            "HC1:{}",
            "6BFOXN*TS0BI$ZD4N9:9S6RCVN5+O30K3/XIV0W23NTDEXWK G2EP4J0B".repeat(3)
        );
        let svg = svg(&text, "#00a050").unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("#00a050"));
        let png = png(&text, 4).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
