// The card form of the Payment method tab (templates/billing/payment_method.html): Stripe.js
// collects the card (it never reaches our servers) and confirms a SetupIntent, 3-D Secure
// included; the page then posts the SetupIntent's id with the ticked authorisation. Loaded
// after Stripe.js; the page's values are data-* attributes of the button (the
// Content-Security-Policy allows no inline script).
(function () {
  const save = document.getElementById("save");
  const stripe = Stripe(save.dataset.publishableKey);
  const card = stripe.elements().create("card");
  card.mount("#card");
  const error = document.getElementById("error");
  save.addEventListener("click", async function () {
    // The authorisation first: the card goes to Stripe only once the box is ticked (the
    // server refuses a save without it too).
    if (!document.getElementById("authorise").checked) {
      error.textContent = "Tick the box authorising us to charge the card under the Terms of Service.";
      error.hidden = false;
      return;
    }
    error.hidden = true;
    this.disabled = true;
    const result = await stripe.confirmCardSetup(this.dataset.clientSecret, {payment_method: {card: card}});
    if (result.error || (result.setupIntent && result.setupIntent.status !== "succeeded")) {
      error.textContent = result.error ? result.error.message : "Your bank did not confirm the card.";
      error.hidden = false;
      this.disabled = false;
      return;
    }
    document.getElementById("setup_intent").value = result.setupIntent.id;
    document.getElementById("saved").submit();
  });
})();
