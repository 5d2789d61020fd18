//! Serde models of the Threads Graph API (facts: shared/threads-api.md).
//!
//! One copy, used by the extension's client to parse and by the simulator to answer, so
//! the two cannot drift apart. Pure: no I/O.

pub mod demographics;
pub mod error;
pub mod insights;
pub mod time;

#[cfg(test)]
mod fuzz;

use serde::{Deserialize, Serialize};

pub use error::{ApiError, ErrorClass, ErrorEnvelope};
pub use insights::{AccountInsights, InsightsError, PostMetrics, Readings};

/// Earliest `since` the account insights endpoint accepts (2024-04-13).
pub const EARLIEST_INSIGHTS_SINCE: i64 = 1_712_991_600;
/// Earliest `since` the posts listing accepts.
pub const EARLIEST_POSTS_SINCE: i64 = 1_688_540_400;
/// Page size limits of the posts listing.
pub const DEFAULT_PAGE_LIMIT: usize = 25;
pub const MAX_PAGE_LIMIT: usize = 100;
/// Lifetime of a long-lived token, and the minimum age before it may be refreshed.
pub const TOKEN_LIFETIME_SECS: i64 = 60 * 24 * 3600;
pub const TOKEN_MIN_AGE_SECS: i64 = 24 * 3600;

/// Fields the sync asks for when listing posts.
pub const POST_FIELDS: &str = "id,media_product_type,media_type,media_url,permalink,owner,username,text,timestamp,shortcode,thumbnail_url,children,is_quote_post,quoted_post,reposted_post,alt_text,link_attachment_url,gif_url,topic_tag,poll_attachment,has_replies,reply_audience";
/// Metrics the sync asks for per post.
pub const POST_METRICS: &str = "views,likes,replies,reposts,quotes,shares";
/// Metrics the sync asks for per account.
pub const ACCOUNT_METRICS: &str = "views,likes,replies,reposts,quotes,clicks,followers_count";

/// A post's `media_type`. Meta adds types over time (AUDIO and REPOST_FACADE came after
/// launch): one this client does not know is kept as `Other` with its text, never refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MediaType {
    TextPost,
    Image,
    Video,
    CarouselAlbum,
    Audio,
    RepostFacade,
    Other(String),
}

impl MediaType {
    /// The types documented today.
    pub const KNOWN: [MediaType; 6] = [
        MediaType::TextPost,
        MediaType::Image,
        MediaType::Video,
        MediaType::CarouselAlbum,
        MediaType::Audio,
        MediaType::RepostFacade,
    ];

    pub fn parse(text: &str) -> MediaType {
        match text {
            "TEXT_POST" => MediaType::TextPost,
            "IMAGE" => MediaType::Image,
            "VIDEO" => MediaType::Video,
            "CAROUSEL_ALBUM" => MediaType::CarouselAlbum,
            "AUDIO" => MediaType::Audio,
            "REPOST_FACADE" => MediaType::RepostFacade,
            other => MediaType::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            MediaType::TextPost => "TEXT_POST",
            MediaType::Image => "IMAGE",
            MediaType::Video => "VIDEO",
            MediaType::CarouselAlbum => "CAROUSEL_ALBUM",
            MediaType::Audio => "AUDIO",
            MediaType::RepostFacade => "REPOST_FACADE",
            MediaType::Other(text) => text,
        }
    }

    pub fn is_known(&self) -> bool {
        !matches!(self, MediaType::Other(_))
    }

    /// REPOST_FACADE posts have no insights: the API answers `{"data":[]}`. An unknown
    /// type is asked: its answer tells.
    pub fn has_insights(&self) -> bool {
        *self != MediaType::RepostFacade
    }
}

impl Serialize for MediaType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MediaType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(MediaType::parse(&String::deserialize(deserializer)?))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRef {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Children {
    pub data: Vec<IdRef>,
}

/// One post as listed by `/{user-id}/threads`. Everything but `id` may be absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_product_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permalink: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<IdRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::threads_timestamp_opt"
    )]
    pub timestamp: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortcode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children: Option<Children>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_quote_post: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted_post: Option<IdRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reposted_post: Option<IdRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_attachment_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gif_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_tag: Option<String>,
    /// A poll's options and, once it closed, its results, as Meta sends them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_attachment: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_replies: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_audience: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursors: Option<Cursors>,
    /// Present only when another page exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// The `{"data":[…],"paging":{…}}` envelope of listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

impl<T> Page<T> {
    /// The cursor of the next page, when the API says one exists.
    pub fn next_after(&self) -> Option<&str> {
        let paging = self.paging.as_ref()?;
        paging.next.as_ref()?;
        paging.cursors.as_ref()?.after.as_deref()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads_profile_picture_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads_biography: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_verified: Option<bool>,
}

/// Answer of `/refresh_access_token` and `/access_token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    /// OAuth answers carry it as a JSON number above 2^53: read as text, never f64.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "number_or_string_opt"
    )]
    pub user_id: Option<String>,
}

fn number_or_string_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(u64),
        Text(String),
    }
    Ok(Option::<Id>::deserialize(d)?.map(|id| match id {
        Id::Number(n) => n.to_string(),
        Id::Text(s) => s,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_documented_post_listing() {
        let body = r#"{"data":[{"id":"1234567","media_product_type":"THREADS","media_type":"CAROUSEL_ALBUM",
            "permalink":"https://www.threads.net/@u/post/abc","owner":{"id":"42"},"username":"u",
            "text":"héllo 🌍 你好","timestamp":"2023-10-17T05:42:03+0000","shortcode":"abc",
            "children":{"data":[{"id":"1"},{"id":"2"}]},"is_quote_post":false}],
            "paging":{"cursors":{"before":"B","after":"A"},"next":"https://graph.threads.net/v1.0/42/threads?after=A"}}"#;
        let page: Page<Post> = serde_json::from_str(body).unwrap();
        let post = &page.data[0];
        assert_eq!(post.media_type, Some(MediaType::CarouselAlbum));
        assert_eq!(
            post.timestamp.unwrap().to_rfc3339(),
            "2023-10-17T05:42:03+00:00"
        );
        assert_eq!(post.children.as_ref().unwrap().data.len(), 2);
        assert_eq!(page.next_after(), Some("A"));
    }

    #[test]
    fn an_unknown_media_type_is_kept_not_refused() {
        let body = r#"{"data":[{"id":"1","media_type":"SPATIAL_VIDEO","timestamp":"2026-10-17T05:42:03+0000"},
            {"id":"2","media_type":"AUDIO"}]}"#;
        let page: Page<Post> = serde_json::from_str(body).unwrap();
        let unknown = page.data[0].media_type.clone().unwrap();
        assert_eq!(unknown, MediaType::Other("SPATIAL_VIDEO".into()));
        assert!(!unknown.is_known() && unknown.has_insights());
        assert_eq!(unknown.as_str(), "SPATIAL_VIDEO");
        assert_eq!(page.data[1].media_type, Some(MediaType::Audio));
        assert_eq!(
            serde_json::to_string(&page.data[0]).unwrap(),
            r#"{"id":"1","media_type":"SPATIAL_VIDEO","timestamp":"2026-10-17T05:42:03+0000"}"#
        );
        for known in MediaType::KNOWN {
            assert_eq!(MediaType::parse(known.as_str()), known);
        }
    }

    #[test]
    fn no_next_means_last_page_even_with_cursors() {
        let body = r#"{"data":[],"paging":{"cursors":{"before":"B","after":"A"}}}"#;
        let page: Page<Post> = serde_json::from_str(body).unwrap();
        assert_eq!(page.next_after(), None);
    }

    #[test]
    fn a_post_without_permalink_parses() {
        let post: Post =
            serde_json::from_str(r#"{"id":"1","media_type":"REPOST_FACADE"}"#).unwrap();
        assert!(post.permalink.is_none());
        assert!(!post.media_type.unwrap().has_insights());
    }

    #[test]
    fn token_user_id_above_2_pow_53_is_exact() {
        let t: TokenResponse = serde_json::from_str(
            r#"{"access_token":"x","token_type":"bearer","expires_in":5183944,"user_id":17841400000000001}"#,
        )
        .unwrap();
        assert_eq!(t.user_id.as_deref(), Some("17841400000000001"));
        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"x","token_type":"bearer","expires_in":1}"#)
                .unwrap();
        assert_eq!(t.user_id, None);
    }

    #[test]
    fn media_types_round_trip() {
        for m in MediaType::KNOWN {
            let text = serde_json::to_string(&m).unwrap();
            assert_eq!(text, format!("\"{}\"", m.as_str()));
            assert_eq!(serde_json::from_str::<MediaType>(&text).unwrap(), m);
        }
    }
}
