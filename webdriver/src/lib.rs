//! A page driven over WebDriver, as the browser tests (`server/tests/browser`, Chromium through
//! chromedriver) and the desktop test (`src-tauri/tests`, the app through tauri-driver) both use
//! it: elements found by CSS and waited for, conditions waited on, and a numbered screenshot at
//! each step and at each failure.
use std::{future::Future, path::PathBuf, time::Duration};

use fantoccini::{elements::Element, error::CmdError, Client, Locator};

pub struct Page {
    pub client: Client,
    name: String,
    /// How long an element or a condition is waited for.
    wait: Duration,
    shots_dir: PathBuf,
    shots: u32,
}

impl Page {
    /// `name` labels failures and names screenshots `<shots_dir>/<name>-<n>-<step>.png`.
    pub fn new(client: Client, name: &str, wait: Duration, shots_dir: PathBuf) -> Self {
        Page { client, name: name.into(), wait, shots_dir, shots: 0 }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("{}: go to {url}: {e}", self.name));
    }

    pub async fn find(&self, css: &str) -> Element {
        match self.client.wait().at_most(self.wait).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(error) => {
                self.failure_screenshot(&format!("find-{}", css.replace(|c: char| !c.is_alphanumeric(), "_"))).await;
                panic!("{}: no {css}: {error}", self.name);
            }
        }
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap_or_else(|e| panic!("{}: click {css}: {e}", self.name));
    }

    /// Text of the first element matching `css`, or "" if there is none.
    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.map(|found| found.len()).unwrap_or(0)
    }

    /// Waits until `check` holds, re-reading the page.
    pub async fn until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + self.wait;
        while tokio::time::Instant::now() < deadline {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.failure_screenshot(&what.replace(' ', "-")).await;
        panic!("{}: timed out waiting for {what}", self.name);
    }

    pub async fn until_text(&self, css: &str, expected: &str) {
        let what = format!("{css} to contain {expected:?}");
        self.until(&what, || async { self.text(css).await.contains(expected) }).await;
    }

    /// A new step: saves `<shots_dir>/<name>-<n>-<step>.png`.
    pub async fn shot(&mut self, step: &str) {
        self.shots += 1;
        self.screenshot(step).await.unwrap_or_else(|e| panic!("{}: screenshot {step}: {e}", self.name));
    }

    /// The page as it is now, numbered like the last step.
    async fn screenshot(&self, step: &str) -> Result<(), CmdError> {
        let png = self.client.screenshot().await?;
        let path = self.shots_dir.join(format!("{}-{:02}-{step}.png", self.name, self.shots));
        std::fs::write(path, png).expect("screenshot written");
        Ok(())
    }

    /// Just before a test fails: the page is saved if it still can be, the failure is what counts.
    async fn failure_screenshot(&self, what: &str) {
        if let Err(error) = self.screenshot(&format!("FAILED-{what}")).await {
            eprintln!("{}: no screenshot: {error}", self.name);
        }
    }

    /// Ends the WebDriver session.
    pub async fn close(self) -> Result<(), CmdError> {
        self.client.close().await
    }
}
