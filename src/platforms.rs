//! The platforms the API names, with what each exposes (the product's platform table).
//! `/api/account` reports them per user; a platform whose bridge is not built reports
//! `not_configured`.

/// One supported platform.
#[derive(Debug, Clone, Copy)]
pub struct Platform {
    /// The API name (`"discord"`, `"sip"`, …).
    pub name: &'static str,
    /// `audio_in`, `audio_out`, `read`, `write`, `typing`.
    pub capabilities: &'static [&'static str],
    /// Whether file send and receive work end to end.
    pub files: bool,
}

/// Every platform of the API, in the product table's order.
pub const PLATFORMS: &[Platform] = &[
    Platform {
        name: "discord",
        capabilities: &["audio_in", "audio_out", "read", "write", "typing"],
        files: true,
    },
    Platform {
        name: "teams",
        capabilities: &["audio_in", "audio_out", "read", "write", "typing"],
        files: false,
    },
    Platform {
        name: "meet",
        capabilities: &["audio_in", "read", "write"],
        files: false,
    },
    Platform {
        name: "zoom",
        capabilities: &["audio_in", "audio_out", "read", "write"],
        files: false,
    },
    Platform {
        name: "telegram",
        capabilities: &["read", "write", "typing"],
        files: true,
    },
    Platform {
        name: "whatsapp",
        capabilities: &["read", "write"],
        files: true,
    },
    Platform {
        name: "slack",
        capabilities: &["read", "write"],
        files: true,
    },
    Platform {
        name: "nctalk",
        capabilities: &["audio_in", "audio_out", "read", "write", "typing"],
        files: true,
    },
    Platform {
        name: "sip",
        capabilities: &["audio_in", "audio_out"],
        files: false,
    },
];
