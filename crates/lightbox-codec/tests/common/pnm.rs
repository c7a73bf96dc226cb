//! Minimal PGM/PPM (P5/P6) and little-endian raw sample I/O shared by tests and examples.

use std::io::{self, Read};

/// An unsigned image read from or written to PNM: interleaved samples.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(dead_code)]
pub struct Pnm {
    pub width: u32,
    pub height: u32,
    pub components: u8,
    pub maxval: u32,
    pub samples: Vec<u16>,
}

#[allow(dead_code)]
impl Pnm {
    /// Bits needed for `maxval`.
    pub fn bits(&self) -> u8 {
        (32 - self.maxval.leading_zeros()) as u8
    }
}

fn token(data: &[u8], pos: &mut usize) -> io::Result<String> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad PNM header");
    loop {
        let c = *data.get(*pos).ok_or_else(bad)?;
        if c == b'#' {
            while *pos < data.len() && data[*pos] != b'\n' {
                *pos += 1;
            }
        } else if c.is_ascii_whitespace() {
            *pos += 1;
        } else {
            break;
        }
    }
    let start = *pos;
    while *pos < data.len() && !data[*pos].is_ascii_whitespace() {
        *pos += 1;
    }
    Ok(String::from_utf8_lossy(&data[start..*pos]).into_owned())
}

pub fn parse_pnm(data: &[u8]) -> io::Result<Pnm> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut pos = 0;
    let magic = token(data, &mut pos)?;
    let components = match magic.as_str() {
        "P5" => 1,
        "P6" => 3,
        _ => return Err(bad("not P5/P6")),
    };
    let width: u32 = token(data, &mut pos)?.parse().map_err(|_| bad("width"))?;
    let height: u32 = token(data, &mut pos)?.parse().map_err(|_| bad("height"))?;
    let maxval: u32 = token(data, &mut pos)?.parse().map_err(|_| bad("maxval"))?;
    pos += 1;
    let n = width as usize * height as usize * components as usize;
    let body = &data[pos.min(data.len())..];
    let samples: Vec<u16> = if maxval < 256 {
        if body.len() < n {
            return Err(bad("short PNM"));
        }
        body[..n].iter().map(|&b| b as u16).collect()
    } else {
        if body.len() < 2 * n {
            return Err(bad("short PNM"));
        }
        body[..2 * n]
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect()
    };
    Ok(Pnm {
        width,
        height,
        components,
        maxval,
        samples,
    })
}

pub fn read_pnm(path: &std::path::Path) -> io::Result<Pnm> {
    let mut data = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut data)?;
    parse_pnm(&data)
}

pub fn pnm_bytes(p: &Pnm) -> Vec<u8> {
    let magic = if p.components == 3 { "P6" } else { "P5" };
    let mut out = format!("{magic}\n{} {}\n{}\n", p.width, p.height, p.maxval).into_bytes();
    if p.maxval < 256 {
        out.extend(p.samples.iter().map(|&s| s as u8));
    } else {
        for &s in &p.samples {
            out.extend_from_slice(&s.to_be_bytes());
        }
    }
    out
}

pub fn write_pnm(path: &std::path::Path, p: &Pnm) -> io::Result<()> {
    std::fs::write(path, pnm_bytes(p))
}
