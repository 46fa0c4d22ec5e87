//! The little reel reads of S3's and STS's XML answers (roxmltree: an answer that does not
//! parse yields nothing, never a panic).

/// The text of the first element named `tag` (namespace ignored).
pub fn first_text(xml: &str, tag: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    doc.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == tag)
        .and_then(|n| n.text())
        .map(|t| t.trim().to_owned())
}

/// Whether the document's root element is `<Error>` (S3 may answer 200 with one).
pub fn is_error(xml: &str) -> bool {
    roxmltree::Document::parse(xml).is_ok_and(|d| d.root_element().tag_name().name() == "Error")
}

/// An error answer as `Code: Message` (or whichever of them is there).
pub fn error_text(xml: &str) -> Option<String> {
    match (first_text(xml, "Code"), first_text(xml, "Message")) {
        (Some(c), Some(m)) => Some(format!("{c}: {m}")),
        (Some(c), None) => Some(c),
        (None, Some(m)) => Some(m),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_answers_and_survives_garbage() {
        let create = r#"<?xml version="1.0" encoding="UTF-8"?>
<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><Key>k</Key><UploadId>abc-123</UploadId></InitiateMultipartUploadResult>"#;
        assert_eq!(first_text(create, "UploadId").as_deref(), Some("abc-123"));
        assert!(!is_error(create));
        let err = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
        assert!(is_error(err));
        assert_eq!(
            error_text(err).as_deref(),
            Some("AccessDenied: Access Denied")
        );
        for junk in ["", "<", "<a><b>", "\u{0}\u{1}", "<Error>"] {
            assert_eq!(first_text(junk, "Code"), None);
            assert!(!is_error(junk));
        }
    }
}
