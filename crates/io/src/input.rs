//! Reading user input from any stream.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::IoError;

/// The path that means standard input.
pub const STDIN: &str = "-";

/// A buffered reader over a file, standard input or a gzip stream, decompressed.
pub type InputReader = Box<dyn BufRead + Send>;

/// Opens `path` for reading (`-` is standard input), decompressing gzip when the stream starts
/// with gzip's magic bytes. The stream is opened once and its first bytes are peeked, not
/// consumed, so pipes and `/dev/stdin` lose nothing. Multi-member gzip files are read whole.
pub fn open_input(path: &Path) -> Result<InputReader, IoError> {
    let mut raw: Box<dyn Read + Send> = if path.as_os_str() == STDIN {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(path).map_err(IoError::at(path))?)
    };
    // Read the first two bytes (a pipe may deliver them one at a time), then put them back in
    // front of the rest of the stream.
    let mut head = Vec::with_capacity(2);
    (&mut raw)
        .take(2)
        .read_to_end(&mut head)
        .map_err(IoError::at(path))?;
    let gzip = head == [0x1f, 0x8b];
    let stream = std::io::Cursor::new(head).chain(raw);
    let buffered = BufReader::with_capacity(1 << 16, stream);
    if gzip {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(buffered),
        )))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Reads a whole input (`-` for standard input, gzip decompressed) as UTF-8 text, with a leading
/// byte-order mark removed.
pub fn read_to_string(path: &Path) -> Result<String, IoError> {
    let mut text = String::new();
    open_input(path)?
        .read_to_string(&mut text)
        .map_err(IoError::at(path))?;
    if let Some(rest) = text.strip_prefix('\u{feff}') {
        text = rest.to_string();
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_is_recognised_by_content() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rows.txt"); // no .gz in the name
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"hello\nworld\n").unwrap();
        std::fs::write(&p, gz.finish().unwrap()).unwrap();
        assert_eq!(read_to_string(&p).unwrap(), "hello\nworld\n");
    }

    #[test]
    fn plain_text_loses_no_byte_and_drops_a_bom() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        std::fs::write(&p, "\u{feff}{\"a\": 1}\n").unwrap();
        assert_eq!(read_to_string(&p).unwrap(), "{\"a\": 1}\n");
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let err = open_input(Path::new("/no/such/file.jsonl")).err().unwrap();
        assert!(
            err.to_string().starts_with("/no/such/file.jsonl: "),
            "{err}"
        );
    }
}
