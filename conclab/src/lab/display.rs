//! The evcxr rich-output protocol: a value shows itself by printing MIME-typed blocks.

use std::io::Write;

/// Prints each `(mime, content)` block in evcxr's `EVCXR_BEGIN_CONTENT` framing, in one
/// locked write so blocks from one value are not interleaved with other output.
pub fn emit(blocks: &[(&str, &str)]) {
    let mut out = String::new();
    for (mime, content) in blocks {
        out.push_str("EVCXR_BEGIN_CONTENT ");
        out.push_str(mime);
        out.push('\n');
        out.push_str(content);
        out.push_str("\nEVCXR_END_CONTENT\n");
    }
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let _ = lock.write_all(out.as_bytes());
    let _ = lock.flush();
}
