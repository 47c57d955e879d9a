// Appended by scripts/localstripe_server.py to the stand-in's Stripe.js (localstripe-v3.js),
// in the same script, so `Element` below is localstripe's card field.
//
// localstripe's card field sends "20" followed by the year typed: 28 became 2028, but 2028 became
// 202028 and the stand-in answered "Bad request". When the card is sent, it is read again from
// its inputs as typed (the number without spaces): the year as YY or YYYY, which the stand-in
// checks and, if wrong, names in words (scripts/localstripe_server.py, card_problem).
(function () {
  const makeStripe = window.Stripe;
  window.Stripe = function (apiKey) {
    const stripe = makeStripe(apiKey);
    const confirmCardSetup = stripe.confirmCardSetup;
    stripe.confirmCardSetup = function (clientSecret, data) {
      const element = data && data.payment_method && data.payment_method.card;
      if (element instanceof Element && element._inputs) {
        const typed = (field) => element._inputs[field].value.trim();
        element.value = {
          card: {
            number: typed("number").replace(/[\s-]/g, ""),
            exp_month: typed("exp_month"),
            exp_year: typed("exp_year"),
            cvc: typed("cvc"),
          },
          postal_code: typed("postal_code"),
        };
      }
      return confirmCardSetup.call(this, clientSecret, data);
    };
    return stripe;
  };

  // Room for four digits in the year, and the formats said where a mouse hovers.
  const mount = Element.prototype.mount;
  Element.prototype.mount = function (domElement) {
    mount.call(this, domElement);
    if (this._inputs) {
      this._inputs.number.setAttribute("size", 19);
      this._inputs.exp_month.setAttribute("title", "Month: MM");
      this._inputs.exp_year.setAttribute("size", 4);
      this._inputs.exp_year.setAttribute("title", "Year: YY or YYYY");
    }
  };
})();
