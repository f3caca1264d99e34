// Loads the WebAssembly app. A file of its own: the Content-Security-Policy allows no inline script.
import init from "./parley_ui.js";
init();
