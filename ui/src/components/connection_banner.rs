//! Tells when the live connection is down and when it will try again.
use yew::prelude::*;

use super::{server_problem, AppContext};
use crate::backend::Connection;

#[function_component(ConnectionBanner)]
pub fn connection_banner() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let text = match &ctx.state.connection {
        Connection::Online | Connection::Off => {
            return html! { <div class="banner-slot" role="status" aria-live="polite"></div> }
        }
        Connection::Connecting => "Connecting…".to_string(),
        Connection::Reconnecting { retry_in_secs, problem: None } => {
            format!("Connection lost. Reconnecting in {retry_in_secs} s… Messages you write will be sent then.")
        }
        Connection::Reconnecting { retry_in_secs, problem: Some(problem) } => format!(
            "{} Trying again in {retry_in_secs} s… Messages you write will be sent once connected.",
            server_problem(problem)
        ),
    };
    html! {
        <div class="banner-slot" role="status" aria-live="polite">
            <p class="banner reconnecting" id="connection-banner">{ text }</p>
        </div>
    }
}
